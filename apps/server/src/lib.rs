//! The Vivified core as an HTTP server: settings, wiring, routes. Thin by design: the
//! rules live in `vivified-domain`, the backends in `vivified-adapters`.

pub mod audit;
pub mod conn_watch;
pub mod dev_secrets;
pub mod error;
pub mod extract;
pub mod lockout;
pub mod metrics;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod wire;

pub use settings::Settings;
pub use startup::{AppState, Application, Services, StartupError};
