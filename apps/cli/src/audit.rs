//! `vivified audit …`: verify a running core's audit chain (`GET /audit/verify`, walked
//! to the end in bounded steps) and read its newest entries (`GET /audit`), once or
//! following new ones.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use vivified_domain::audit_chain::Checkpoint;

use crate::Error;
use crate::client::{ClientError, CoreClient};
use crate::error::runtime;
use crate::text::safe;

/// Entries per `GET /audit` page (the core's largest).
const PAGE: usize = 1000;

/// `vivified audit [--core-url URL] [--json] <COMMAND>`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the core.
    #[arg(
        long,
        global = true,
        env = "VIVIFIED_CORE_URL",
        default_value = "http://127.0.0.1:8000",
        value_name = "URL"
    )]
    core_url: String,
    /// Print the core's JSON instead of text (for `tail`, one entry per line).
    #[arg(long, global = true)]
    json: bool,
    /// Bound on each request to the core (e.g. 500ms, 10s).
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// A CA certificate (PEM) trusted for an https:// core, besides the system's roots.
    #[arg(long, global = true, env = "VIVIFIED_CA_CERT", value_name = "PEM")]
    ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Walk the whole chain: "intact up to seq N" (exit 0), "first bad seq N: reason"
    /// (exit 1), or an error (exit 2).
    Verify {
        /// A checkpoint from the core's log (its `audit_checkpoint` field), so that
        /// entries cut from the end of the chain are caught too.
        #[arg(long, value_name = "SEQ:HASH:MAC")]
        checkpoint: Option<String>,
        /// Verify an export (`GET /audit/export`, one entry per line; `-`: standard
        /// input) offline instead of asking a core, with the audit keys from
        /// VIVIFIED_AUDIT_KEY and VIVIFIED_AUDIT_PREVIOUS_KEYS.
        #[arg(long, value_name = "FILE")]
        export: Option<std::path::PathBuf>,
    },
    /// Print the newest entries, oldest first; with --follow, keep printing new ones
    /// as they are sealed.
    Tail {
        /// How many entries (0 to 1000).
        #[arg(short = 'n', long = "lines", default_value_t = 20, value_parser = clap::value_parser!(u16).range(0..=1000))]
        lines: u16,
        /// Keep polling for new entries until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// How often --follow asks the core.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        interval: Duration,
        /// Only entries of this actor (a plugin id, `admin`, `anonymous`, `system`).
        #[arg(long)]
        actor: Option<String>,
        /// Only entries with this action (e.g. `plugin.register`).
        #[arg(long)]
        action: Option<String>,
        /// Only `success` or `denied` entries.
        #[arg(long, value_parser = ["success", "denied"])]
        outcome: Option<String>,
    },
}

/// Runs one `audit` command. `verify` exits 2 on any error (neither intact nor
/// tampered); `tail` exits as the other commands do.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let verify = matches!(args.command, Command::Verify { .. });
    run_inner(args).map_err(|e| {
        if verify {
            Error::Unverified(Box::new(e))
        } else {
            e
        }
    })
}

fn run_inner(args: Args) -> Result<ExitCode, Error> {
    let core_url = if args.core_url.trim().is_empty() {
        "http://127.0.0.1:8000".to_owned()
    } else {
        args.core_url
    };
    match args.command {
        Command::Verify { checkpoint, export } => {
            // Checked before anything is asked.
            let checkpoint = checkpoint
                .map(|c| {
                    c.parse::<Checkpoint>()
                        .map_err(|_| Error::BadArgument("--checkpoint", "not SEQ:HASH:MAC"))
                })
                .transpose()?;
            if let Some(path) = export {
                return crate::audit_export::verify(&path, checkpoint, args.json);
            }
            let client = client(&core_url, args.timeout, args.ca_cert.as_deref())?;
            runtime()?.block_on(verify(&client, checkpoint, args.json))
        }
        Command::Tail {
            lines,
            follow,
            interval,
            actor,
            action,
            outcome,
        } => {
            let client = client(&core_url, args.timeout, args.ca_cert.as_deref())?;
            let filters: Vec<(&str, String)> = [("actor", actor), ("action", action)]
                .into_iter()
                .chain([("outcome", outcome)])
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let tail = Tail {
                client: &client,
                filters,
                json: args.json,
            };
            runtime()?.block_on(tail.run(usize::from(lines), follow.then_some(interval)))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn client(
    core_url: &str,
    timeout: Duration,
    ca_cert: Option<&std::path::Path>,
) -> Result<CoreClient, Error> {
    Ok(CoreClient::with_ca_cert(
        core_url,
        std::env::var("VIVIFIED_ADMIN_TOKEN").ok(),
        timeout,
        ca_cert,
    )?)
}

fn unexpected(what: impl Into<String>) -> Error {
    Error::Client(ClientError::Unexpected {
        url: "the core".into(),
        what: what.into(),
    })
}

fn write_out(text: &str) -> Result<(), Error> {
    Ok(crate::text::write_out(text)?)
}

/// Asks `/audit/verify` again and again, resuming where the last bounded walk stopped,
/// until the chain's end or a break. The checkpoint goes along until the walk has
/// passed its sequence number.
async fn verify(
    client: &CoreClient,
    mut checkpoint: Option<Checkpoint>,
    json: bool,
) -> Result<ExitCode, Error> {
    let mut resume: Option<String> = None;
    let mut verified_up_to = 0u64;
    // Where each audit key took over, over every step of the walk.
    let mut keys: Vec<String> = Vec::new();
    loop {
        let mut query = Vec::new();
        if let Some(cp) = &checkpoint {
            query.push(("checkpoint", cp.to_string()));
        }
        if let Some(r) = &resume {
            query.push(("resume", r.clone()));
        }
        let report = client.get_object("audit", &["verify"], &query).await?;
        let intact = report["intact"]
            .as_bool()
            .ok_or_else(|| unexpected("a verification report without `intact`"))?;
        let up_to = report["verified_up_to"]
            .as_u64()
            .ok_or_else(|| unexpected("a verification report without `verified_up_to`"))?;
        for span in report["keys"].as_array().into_iter().flatten() {
            if let (Some(key), Some(from)) = (span["key"].as_str(), span["from_seq"].as_u64()) {
                keys.push(format!("key {} from seq {from}", safe(key)));
            }
        }
        if !intact {
            let seq = report["first_bad_seq"]
                .as_u64()
                .ok_or_else(|| unexpected("a failed verification without `first_bad_seq`"))?;
            let reason = report["reason"].as_str().unwrap_or("unknown");
            write_out(&if json {
                pretty(&report)
            } else {
                format!("first bad seq {seq}: {}\n", safe(reason))
            })?;
            return Ok(ExitCode::from(1));
        }
        if report["complete"] != Value::Bool(false) {
            write_out(&if json {
                pretty(&report)
            } else if keys.len() < 2 {
                // One key throughout: nothing to say about keys.
                format!("intact up to seq {up_to}\n")
            } else {
                format!("intact up to seq {up_to} ({})\n", keys.join(", "))
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        let last = &report["last_verified"];
        let (Some(seq), Some(hash)) = (last["seq"].as_u64(), last["hash"].as_str()) else {
            return Err(unexpected(
                "an incomplete verification without `last_verified`",
            ));
        };
        if seq <= verified_up_to && resume.is_some() {
            return Err(unexpected("the verification does not advance"));
        }
        verified_up_to = seq;
        // With the key in force there, so a missing rotation across the step is caught.
        resume = Some(match last["key"].as_str() {
            Some(key) => format!("{seq}:{hash}:{key}"),
            None => format!("{seq}:{hash}"),
        });
        if checkpoint.is_some_and(|cp| cp.seq <= seq) {
            checkpoint = None;
        }
    }
}

struct Tail<'a> {
    client: &'a CoreClient,
    filters: Vec<(&'static str, String)>,
    json: bool,
}

impl Tail<'_> {
    async fn page(&self, extra: &[(&'static str, String)]) -> Result<(Vec<Value>, bool), Error> {
        let mut query = self.filters.clone();
        query.extend_from_slice(extra);
        let page = self.client.get_object("audit", &[], &query).await?;
        let entries = page["entries"]
            .as_array()
            .ok_or_else(|| unexpected("no `entries` list"))?
            .clone();
        Ok((entries, !page["next_after"].is_null()))
    }

    fn print(&self, entries: &[Value]) -> Result<(), Error> {
        let mut out = String::new();
        for e in entries {
            if self.json {
                out.push_str(&e.to_string());
            } else {
                let field = |k: &str| match &e[k] {
                    Value::String(s) => safe(s).into_owned(),
                    Value::Null => "-".to_owned(),
                    other => other.to_string(),
                };
                out.push_str(&format!(
                    "{}  {}  {}  {}  {}  {}  {}",
                    field("seq"),
                    field("at"),
                    field("actor"),
                    field("action"),
                    field("target"),
                    field("outcome"),
                    field("reason"),
                ));
            }
            out.push('\n');
        }
        write_out(&out)
    }

    /// The newest `lines` entries, oldest first; then, with `follow`, every entry
    /// sealed after them, polling every `follow` interval.
    async fn run(&self, lines: usize, follow: Option<Duration>) -> Result<(), Error> {
        let mut cursor: Option<u64> = None;
        if lines > 0 {
            let (mut entries, _) = self
                .page(&[("order", "newest".into()), ("limit", lines.to_string())])
                .await?;
            entries.reverse();
            cursor = entries.last().and_then(|e| e["seq"].as_u64());
            self.print(&entries)?;
        }
        let Some(interval) = follow else {
            return Ok(());
        };
        if cursor.is_none() {
            // Start after the newest entry of any kind.
            let page = self
                .client
                .get_object(
                    "audit",
                    &[],
                    &[("order", "newest".into()), ("limit", "1".into())],
                )
                .await?;
            cursor = page["entries"][0]["seq"].as_u64();
        }
        loop {
            let mut extra = vec![("limit", PAGE.to_string())];
            if let Some(c) = cursor {
                extra.push(("after", c.to_string()));
            }
            let (entries, more) = self.page(&extra).await?;
            if let Some(last) = entries.last().and_then(|e| e["seq"].as_u64()) {
                cursor = Some(last);
            }
            self.print(&entries)?;
            if !more {
                tokio::time::sleep(interval).await;
            }
        }
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_checked_before_any_request() {
        let args = Args {
            core_url: "http://127.0.0.1:1".into(),
            json: false,
            timeout: Duration::from_secs(1),
            ca_cert: None,
            command: Command::Verify {
                checkpoint: Some("12:nothex:x".into()),
                export: None,
            },
        };
        let err = run(args).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--checkpoint"), "{err}");
    }
}
