//! `{{crate_name}}`: the {{plugin_id}} plugin. Configured by the environment
//! (`vivified_plugin_sdk::Config::from_env`): `CORE_URL` (default
//! `http://127.0.0.1:8000`; `https://…` for a core that serves TLS), `VIVIFIED_CA_CERT`
//! (one more CA to trust), `VIVIFIED_REGISTRATION_SECRET` (for a core in production
//! mode), `PLUGIN_TOKEN_FILE`, `PLUGIN_REQUEST_TIMEOUT`, `PLUGIN_BACKOFF_INITIAL`,
//! `PLUGIN_BACKOFF_MAX`, `PLUGIN_DEREGISTER_ON_SHUTDOWN`; logs are JSON lines on stdout
//! filtered by `RUST_LOG` (else `PLUGIN_LOG_LEVEL`, else `info`).
//!
//! Exit code: 0 after a clean stop (SIGINT, SIGTERM), 2 for a configuration or
//! manifest error, 1 otherwise.

use std::process::ExitCode;

use vivified_plugin_sdk::{Config, RunError, Runner};

use {{crate_ident}}::{{type_name}};

#[tokio::main]
async fn main() -> ExitCode {
    vivified_plugin_sdk::init_logging();
    let plugin = match {{type_name}}::new() {
        Ok(plugin) => plugin,
        Err(e) => {
            tracing::error!(error = %e, "invalid manifest");
            return ExitCode::from(2);
        }
    };
    let result = async {
        let config = Config::from_env()?;
        Runner::new(plugin, config)?.handle_events().run().await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "plugin stopped with an error");
            match e {
                RunError::Config(_) | RunError::CoreUrl(_) | RunError::Manifest(_) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}
