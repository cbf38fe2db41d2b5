//! `vivified healthcheck`: a container's `HEALTHCHECK` without curl in the image.
//! Exit 0 when the URL answers 200, 1 otherwise (Docker reserves 2).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::Error;
use crate::client::{http_builder, one_line, parse_http_url, redact};
use crate::error::runtime;

/// `vivified healthcheck [--url URL] [--timeout DURATION] [--ca-cert PEM]`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to probe (http:// or https://); a URL without a path gets `/health`.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8000/health",
        value_name = "URL"
    )]
    url: String,
    /// Bound on the whole probe (e.g. 500ms, 3s).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// A CA certificate (PEM) trusted for an https:// URL, besides the system's roots.
    #[arg(long, env = "VIVIFIED_CA_CERT", value_name = "PEM")]
    ca_cert: Option<PathBuf>,
}

/// Probes once. Every failure, even a bad URL, is exit 1 with one line on stderr, so
/// that a container engine reads it as "unhealthy" and never as its reserved code 2.
pub fn run(args: &Args) -> Result<ExitCode, Error> {
    match probe(args) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(why) => {
            eprintln!("vivified: unhealthy: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

fn probe(args: &Args) -> Result<(), String> {
    let mut url = parse_http_url("--url", &args.url).map_err(|e| e.to_string())?;
    if url.path() == "/" {
        url.set_path("/health");
    }
    let shown = redact(&url);
    let client = http_builder(args.timeout, args.ca_cert.as_deref())
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| one_line(&e))?;
    let rt = runtime().map_err(|e| e.to_string())?;
    let status = rt
        .block_on(async { client.get(url).send().await.map(|r| r.status()) })
        .map_err(|e| format!("{shown}: {}", one_line(&e.without_url())))?;
    if status == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("{shown} answered {status}"))
    }
}
