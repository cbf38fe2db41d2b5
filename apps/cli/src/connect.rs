//! How the operator's commands reach a running core: its URL, a bound on each request,
//! a CA for https, and whether to print the core's JSON. The credential comes from
//! `VIVIFIED_OPERATOR_TOKEN` (an operator's own token), else `VIVIFIED_ADMIN_TOKEN`
//! (the bootstrap admin token) — never a flag (it would show in `ps`).

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;
use crate::client::CoreClient;

/// `[--core-url URL] [--json] [--timeout DURATION] [--ca-cert PEM]`
#[derive(Debug, clap::Args)]
pub struct Connect {
    /// Base URL of the core.
    #[arg(
        long,
        global = true,
        env = "VIVIFIED_CORE_URL",
        default_value = "http://127.0.0.1:8000",
        value_name = "URL"
    )]
    core_url: String,
    /// Print the core's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bound on each request to the core (e.g. 500ms, 10s).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// A CA certificate (PEM) trusted for an https:// core, besides the system's roots.
    #[arg(long, global = true, env = "VIVIFIED_CA_CERT", value_name = "PEM")]
    ca_cert: Option<PathBuf>,
}

impl Connect {
    /// A client of the core with the operator's credential from the environment.
    ///
    /// # Errors
    /// A bad URL or CA file.
    pub fn client(&self) -> Result<CoreClient, Error> {
        let core_url = if self.core_url.trim().is_empty() {
            "http://127.0.0.1:8000"
        } else {
            &self.core_url
        };
        Ok(CoreClient::with_ca_cert(
            core_url,
            std::env::var("VIVIFIED_OPERATOR_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| std::env::var("VIVIFIED_ADMIN_TOKEN").ok()),
            self.timeout,
            self.ca_cert.as_deref(),
        )?)
    }
}
