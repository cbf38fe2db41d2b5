//! `vivified-server`: starts the core with settings from a file and the environment.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vivified_domain::Mode;
use vivified_server::{Application, Settings, settings::LogFormat, telemetry};

/// mimalloc instead of glibc's malloc (feature `mimalloc`, on by default): under load
/// the worker threads contended on glibc's arena locks; the load harness compares the
/// two (`docs/PERFORMANCE.md`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log lines queued for the writer thread at most (its default, 128,000 slots, is
/// allocated and touched at start: about 4 MB of idle RSS); beyond it loggers wait, as
/// they would on a blocking write.
const LOG_QUEUE_LINES: usize = 1024;

/// The Vivified plugin platform core.
#[derive(Debug, Parser)]
#[command(name = "vivified-server", version, about)]
struct Cli {
    /// Address to listen on (overrides VIVIFIED_BIND).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// TOML settings file (environment variables override it).
    #[arg(long, env = "VIVIFIED_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), |k| std::env::var(k).ok(), cli.bind)
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vivified-server: {e}");
            return ExitCode::from(2);
        }
    };
    // Log lines are written by `tracing-appender`'s worker thread, never dropped
    // (`lossy(false)`: loggers wait when its queue is full). The worker drains what is
    // queued into a buffer and writes it with one system call; the guard writes out
    // what is pending when `main` returns (after the runtime has stopped).
    let (writer, _log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("vivified-log")
        .finish(std::io::BufWriter::new(std::io::stdout()));
    telemetry::init(&settings.log_level, settings.log_format, writer);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vivified-server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("vivified-server: {e}");
                return ExitCode::from(2);
            }
        };
        print_banner(&app);
        match app.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vivified-server: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// One banner on stderr, outside the structured log: dev mode is loud, and a generated
/// admin token is shown on the start that generated it and never logged.
fn print_banner(app: &Application) {
    let settings = app.settings();
    if settings.mode != Mode::Dev {
        return;
    }
    let mut out = String::new();
    out.push_str("\n  Vivified core -- DEV MODE: open registration, not for production\n");
    out.push_str(&format!(
        "  listening on {}://{}\n",
        app.scheme(),
        app.local_addr()
    ));
    match &app.generated().admin_token {
        Some(token) => {
            out.push_str("  admin token (generated for this start; set VIVIFIED_ADMIN_TOKEN to choose one):\n");
            out.push_str(&format!(
                "    export VIVIFIED_ADMIN_TOKEN={}\n",
                token.expose()
            ));
        }
        None if std::env::var_os("VIVIFIED_ADMIN_TOKEN").is_some() => {
            out.push_str("  admin token: from VIVIFIED_ADMIN_TOKEN\n");
        }
        None => out.push_str(
            "  admin token: the one shown when it was generated (kept with the secrets below)\n",
        ),
    }
    match (
        &app.generated().kept_in,
        app.generated().admin_token.is_some() || app.generated().jwt_secret,
    ) {
        (Some(path), true) => out.push_str(&format!(
            "  generated secrets kept in {} (mode 0600)\n",
            path.display()
        )),
        (Some(path), false) => out.push_str(&format!(
            "  secrets from {} or the environment\n",
            path.display()
        )),
        (None, _) if app.generated().jwt_secret => {
            out.push_str(
                "  JWT secret: generated for this start (tokens stop working on restart)\n",
            );
        }
        (None, _) => {}
    }
    out.push_str(&format!("  store: {:?}\n", settings.store));
    if settings.log_format == LogFormat::Json {
        out.push_str("  logs: JSON on stdout (VIVIFIED_LOG_FORMAT=pretty for text)\n");
    }
    let _ = std::io::stderr().write_all(out.as_bytes());
}
