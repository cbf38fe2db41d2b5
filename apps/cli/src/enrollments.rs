//! `vivified enrollments list|cancel`: the enrollment tokens minted with `vivified
//! enroll` (never the tokens themselves), and taking back one that was not used.

use std::process::ExitCode;

use serde_json::Value;

use crate::Error;
use crate::connect::Connect;
use crate::error::runtime;
use crate::text::{safe, write_out};

/// `vivified enrollments <COMMAND>`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List enrollments, newest first: id, plugin, state (pending, used, expired),
    /// expiry.
    List {
        /// Only this plugin's.
        #[arg(long = "plugin", value_name = "PLUGIN_ID")]
        plugin_id: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
    },
    /// Cancel an unused enrollment: its token registers nothing from now on.
    Cancel {
        /// The enrollment's id (`enrollment_id`, as `enroll` and `list` print it).
        enrollment_id: String,
    },
}

/// Runs one `enrollments` command.
pub fn run(args: &Args) -> Result<ExitCode, Error> {
    let client = args.connect.client()?;
    let rt = runtime()?;
    match &args.command {
        Command::List { plugin_id, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(p) = plugin_id {
                query.push(("plugin_id", p.clone()));
            }
            let answer = rt.block_on(client.get_object("enrollments", &[], &query))?;
            let listed = answer["enrollments"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if args.connect.json {
                write_out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&listed).unwrap_or_default()
                ))?;
            } else {
                write_out(&table(&listed))?;
            }
        }
        Command::Cancel { enrollment_id } => {
            let answer = rt.block_on(client.cancel_enrollment(enrollment_id))?;
            if args.connect.json {
                write_out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                ))?;
            } else {
                write_out(&format!(
                    "enrollment {} for {} cancelled\n",
                    safe(answer["enrollment_id"].as_str().unwrap_or(enrollment_id)),
                    safe(answer["plugin_id"].as_str().unwrap_or("-")),
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per enrollment: `ID  PLUGIN  STATE  EXPIRES_AT  USED_AT`.
fn table(listed: &[Value]) -> String {
    let field = |e: &Value, k: &str| match &e[k] {
        Value::String(s) => safe(s).into_owned(),
        _ => "-".to_owned(),
    };
    listed
        .iter()
        .map(|e| {
            format!(
                "{}  {}  {}  {}  {}\n",
                field(e, "enrollment_id"),
                field(e, "plugin_id"),
                field(e, "state"),
                field(e, "expires_at"),
                field(e, "used_at"),
            )
        })
        .collect()
}
