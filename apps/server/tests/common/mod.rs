//! The real `vivified-server` binary as a child process, through the shared test
//! support crate (`vivified_test_support::process`).

#![allow(dead_code, unused_imports)] // each test binary uses a different part of the helper

pub use vivified_test_support::fs::TempDir;
pub use vivified_test_support::net::free_port;
pub use vivified_test_support::process::{
    Exited, START_TIMEOUT, Server, client, json_lines, message, target, trace_id,
};

/// How to start this package's `vivified-server` binary.
pub type Spawn = vivified_test_support::process::Spawn;

/// This package's `vivified-server` binary, ready to configure and start.
pub fn vivified() -> Spawn {
    Spawn::new(env!("CARGO_BIN_EXE_vivified-server"))
}

/// The repository root (for `schemas/examples/…`).
pub fn repo_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}
