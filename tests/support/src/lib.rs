//! What the workspace's tests share, so that no test file carries its own copy:
//!
//! - [`services`]: whether the Postgres and NATS tests run, in one place — set
//!   `VIVIFIED_TEST_POSTGRES_URL` / `VIVIFIED_TEST_NATS_URL` to run them; without them
//!   a test says it skips and passes, except with `CI` set, where a missing service
//!   fails the test (CI must never skip them silently);
//! - [`postgres::ScratchDb`]: a uniquely named database, dropped when the test ends;
//! - [`net::free_port`], [`fs::TempDir`];
//! - [`fixtures`]: manifests, the example manifest, a response's status and body;
//! - [`pki::Pki`]: a throwaway CA with server and client certificates, as PEM files;
//! - [`cargo::tree`] (the real dependency graph) and [`yaml::documents`] (deploy files
//!   as JSON), for the architecture and deploy-file checks;
//! - [`logs::Logs`]: log lines captured in memory;
//! - [`rt::on_own_runtime`]: async work from `Drop` or from a test that is not async;
//! - [`process::Spawn`]: a `vivified-server` binary as a child process (free port,
//!   clean environment, captured output, waiting for `/health` or log lines).
//!
//! Dev-only (`publish = false`): crates list it under `[dev-dependencies]`.

pub mod cargo;
pub mod fixtures;
pub mod fs;
pub mod logs;
pub mod net;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod rt;
pub mod services;
pub mod yaml;
