//! `vivified serve`: the core, started exactly as the `vivified-server` binary starts
//! it — `Settings::load` (file, environment, `--bind`), `telemetry::init`,
//! `Application::build`, `run_until_stopped` — all from the `vivified-server` library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use vivified_domain::Mode;
use vivified_server::{Application, Settings, settings::LogFormat, telemetry};

use crate::Error;

/// `vivified serve [--bind IP:PORT] [--config FILE]` — the flags of `vivified-server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (overrides VIVIFIED_BIND).
    #[arg(long, value_name = "IP:PORT")]
    bind: Option<SocketAddr>,
    /// TOML settings file (environment variables override it).
    #[arg(long, env = "VIVIFIED_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Serves until SIGINT or SIGTERM. A bad setting or a failed start is exit 2 with one
/// line (the same refusals as `vivified-server`), a failure while serving exit 1.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let settings = Settings::load(args.config.as_deref(), |k| std::env::var(k).ok(), args.bind)?;
    telemetry::init(&settings.log_level, settings.log_format, std::io::stdout);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async move {
        let app = Application::build(settings).await?;
        dev_banner(&app);
        app.run_until_stopped().await.map_err(Error::Output)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Dev mode's notice on stderr, outside the structured log: the mode, the address and
/// a generated admin token (shown on the start that generated it, never logged).
///
/// Interim: `vivified-server` renders a fuller banner in its `main.rs`, which a library
/// user cannot call. Once the server library exports it, this function goes and
/// `serve` prints that one.
fn dev_banner(app: &Application) {
    let settings = app.settings();
    if settings.mode != Mode::Dev {
        return;
    }
    let mut out = format!(
        "\n  Vivified core -- DEV MODE: open registration, not for production\n  listening on http://{}\n",
        app.local_addr()
    );
    if let Some(token) = &app.generated().admin_token {
        out.push_str(&format!(
            "  admin token (generated for this start; set VIVIFIED_ADMIN_TOKEN to choose one):\n    export VIVIFIED_ADMIN_TOKEN={}\n",
            token.expose()
        ));
    }
    if let Some(path) = &app.generated().kept_in {
        out.push_str(&format!("  secrets kept in {}\n", path.display()));
    }
    out.push_str(&format!("  store: {:?}\n", settings.store));
    if settings.log_format == LogFormat::Json {
        out.push_str("  logs: JSON on stdout (VIVIFIED_LOG_FORMAT=pretty for text)\n");
    }
    let _ = std::io::stderr().write_all(out.as_bytes());
}
