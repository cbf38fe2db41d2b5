//! Process tests of the `vivified` binary (`CARGO_BIN_EXE_vivified`): validate,
//! plugins and audit against a real in-process core, healthcheck and serve. One test
//! binary, one module per command.

mod audit;
mod common;
mod healthcheck;
mod operators;
mod plugins;
mod serve;
mod validate;
