//! `vivified enroll <PLUGIN_ID> [--ttl 1h]`: a one-time enrollment token for one plugin
//! id, printed alone on stdout (so it can be captured) with its expiry on stderr.

use std::io::Write;
use std::process::ExitCode;

use crate::Error;
use crate::connect::Connect;
use crate::error::runtime;

/// `vivified enroll <PLUGIN_ID> [--ttl DURATION] [--core-url URL] [--json]`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin id the token registers (once).
    plugin_id: String,
    /// How long the token stays good (at most 7d), e.g. 15m, 1h, 2d.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    ttl: String,
    #[command(flatten)]
    connect: Connect,
}

/// Mints the token.
pub fn run(args: &Args) -> Result<ExitCode, Error> {
    let client = args.connect.client()?;
    let answer = runtime()?.block_on(client.enroll(&args.plugin_id, &args.ttl))?;
    let mut stdout = std::io::stdout().lock();
    if args.connect.json {
        let mut s = serde_json::to_string_pretty(&answer).unwrap_or_default();
        s.push('\n');
        stdout.write_all(s.as_bytes())?;
    } else {
        let token = answer["token"].as_str().unwrap_or_default();
        writeln!(stdout, "{token}")?;
        eprintln!(
            "enrollment {} for {}: registers once, until {} (give it to the plugin as VIVIFIED_ENROLLMENT_TOKEN)",
            crate::text::safe(answer["enrollment_id"].as_str().unwrap_or("-")),
            crate::text::safe(answer["plugin_id"].as_str().unwrap_or(&args.plugin_id)),
            crate::text::safe(answer["expires_at"].as_str().unwrap_or("-")),
        );
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
