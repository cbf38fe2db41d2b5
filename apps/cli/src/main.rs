//! `vivified`: validate plugin manifests, run the core, and operate a running core.
//!
//! Exit codes: 0 success; 1 the thing asked about is not so (an invalid manifest, an
//! unhealthy endpoint) or the core refused or could not be reached; 2 bad usage, a bad
//! setting or an unreadable file (and for `audit verify`, any error: 1 means tampered).
//! Every error is one line on stderr, `vivified: …`.

mod audit;
mod audit_export;
#[cfg(feature = "serve")]
mod backup;
mod client;
mod connect;
mod enroll;
mod enrollments;
mod error;
mod healthcheck;
mod new_plugin;
mod operators;
mod plugins;
#[cfg(feature = "serve")]
mod serve;
mod text;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::Error;

/// The Vivified plugin platform's command line: validate manifests, run the core,
/// operate a running core.
#[derive(Debug, Parser)]
#[command(name = "vivified", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check plugin manifests with the core's own schema and rules (exit 0 valid, 1
    /// invalid, 2 unreadable).
    Validate(validate::Args),
    /// Start the core: the same settings and start-up as the vivified-server binary.
    #[cfg(feature = "serve")]
    Serve(serve::Args),
    /// List, inspect, disable, enable, approve or refuse, deregister and revoke the
    /// tokens of the plugins of a running core (admin token from VIVIFIED_ADMIN_TOKEN).
    Plugins(plugins::Args),
    /// Mint a one-time enrollment token that registers one plugin id once (admin token
    /// from VIVIFIED_ADMIN_TOKEN); the token alone on stdout.
    Enroll(enroll::Args),
    /// List the enrollments minted (never their tokens) and cancel unused ones (admin
    /// token from VIVIFIED_ADMIN_TOKEN).
    Enrollments(enrollments::Args),
    /// Create, list, show and remove the operators of a running core, and their API
    /// tokens (credential from VIVIFIED_OPERATOR_TOKEN or VIVIFIED_ADMIN_TOKEN).
    Operators(operators::Args),
    /// Who the configured credential is (VIVIFIED_OPERATOR_TOKEN or
    /// VIVIFIED_ADMIN_TOKEN).
    Whoami(operators::WhoamiArgs),
    /// Verify the audit chain of a running core (exit 0 intact, 1 tampered, 2 error)
    /// and read its entries (admin token from VIVIFIED_ADMIN_TOKEN).
    Audit(audit::Args),
    /// Exit 0 when a health endpoint answers 200, else 1 (for container health checks).
    Healthcheck(healthcheck::Args),
    /// Write a new plugin crate from the template: manifest, SDK wiring, a test against
    /// an in-process core, README (exit 2 for a bad name or an existing directory).
    NewPlugin(new_plugin::Args),
    /// Copy the SQLite store into a new file while the core runs on it (VACUUM INTO);
    /// Postgres is backed up with pg_dump.
    #[cfg(feature = "serve")]
    Backup(backup::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(args),
        Command::Plugins(args) => plugins::run(args),
        Command::Enroll(args) => enroll::run(&args),
        Command::Enrollments(args) => enrollments::run(&args),
        Command::Operators(args) => operators::run(&args),
        Command::Whoami(args) => operators::whoami(&args),
        Command::Audit(args) => audit::run(args),
        Command::Healthcheck(args) => healthcheck::run(&args),
        Command::NewPlugin(args) => new_plugin::run(args),
        #[cfg(feature = "serve")]
        Command::Backup(args) => backup::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if !e.is_broken_pipe() {
                eprintln!("vivified: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
