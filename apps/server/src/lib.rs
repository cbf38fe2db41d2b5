//! The Vivified core as an HTTP server: settings, wiring, routes. Thin by design: the
//! rules live in `vivified-domain`, the backends in `vivified-adapters`.

pub mod audit;
pub mod audit_routes;
pub mod conn_watch;
pub mod dev_secrets;
pub mod error;
pub mod event_routes;
pub mod extract;
pub mod log_writer;
pub mod metrics;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod tls;

pub use settings::Settings;
pub use startup::{AppState, Application, Services, StartupError};
