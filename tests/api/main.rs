//! HTTP API tests: every row of the API table and every error code, through the real
//! router (`vivified_server::routes::router`) driven with `tower::ServiceExt::oneshot`.

mod access;
mod approve;
mod audit;
mod break_glass;
mod checkpoints;
mod compat;
mod concurrency;
mod cors;
mod deregister;
mod disable;
mod enroll;
mod events;
mod health;
mod heartbeat;
mod helpers;
mod instances;
mod introspect;
mod limits;
mod list;
mod liveness;
mod lockout;
mod metrics;
mod operators;
mod ordering;
mod plugin_get;
mod production;
mod rate_limit;
mod register;
mod rejections;
mod reregister;
mod revoke;
mod routing;
mod token;
mod trace;
mod unavailable;
