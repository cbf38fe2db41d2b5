//! `vivified plugins …`: the operator's commands against a running core, as a table
//! or, with `--json`, as the records the core answers.

use std::io::Write;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;
use crate::client::CoreClient;
use crate::connect::Connect;
use crate::error::runtime;
use crate::text::{safe, table};

/// `vivified plugins [--core-url URL] [--json] <COMMAND>`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List every plugin, sorted by id.
    List,
    /// Show one plugin's record.
    Show {
        /// The plugin's id.
        id: String,
    },
    /// Disable a plugin: its heartbeats and events are refused until it is enabled.
    Disable {
        /// The plugin's id.
        id: String,
        /// Why (kept in the record as `disabled_reason`).
        #[arg(long)]
        reason: String,
    },
    /// Enable a disabled plugin.
    Enable {
        /// The plugin's id.
        id: String,
    },
    /// Approve the sensitive traits (handles_phi, external_service) a plugin declares:
    /// until then it may not publish, pull or receive events.
    Approve {
        /// The plugin's id.
        id: String,
    },
    /// Refuse the sensitive traits a plugin waits to have approved: it is disabled
    /// ("approval refused: REASON") and stays unapproved.
    Refuse {
        /// The plugin's id.
        id: String,
        /// Why (kept in the record's `disabled_reason` and on the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Deregister a plugin: its record is deleted, its token stops working and its
    /// id is free again.
    Deregister {
        /// The plugin's id.
        id: String,
    },
    /// Revoke the tokens of one plugin, or with --all of every plugin, issued at or
    /// before an instant: they stop working at their next request. The plugin
    /// registers again with a registration credential.
    #[command(group(clap::ArgGroup::new("whom").required(true).args(["id", "all"])))]
    RevokeBefore {
        /// The plugin's id.
        id: Option<String>,
        /// Every plugin (a suspected compromise of the signing key).
        #[arg(long)]
        all: bool,
        /// The instant: "now" or an RFC 3339 time with an offset, not in the future.
        #[arg(long, default_value = "now", value_name = "TIME")]
        at: String,
    },
}

/// The members of a record the text output shows.
#[derive(Debug, Deserialize)]
struct Record {
    plugin_id: String,
    #[serde(default)]
    manifest: Value,
    status: String,
    health: String,
    enabled: bool,
    #[serde(default)]
    disabled_reason: Option<String>,
    registered_at: String,
    #[serde(default)]
    last_heartbeat: Option<String>,
    #[serde(default)]
    approval: Option<String>,
    #[serde(default)]
    pending_traits: Vec<String>,
    /// Absent from a core without instances.
    #[serde(default)]
    instances: Vec<Instance>,
}

/// One instance of a plugin record.
#[derive(Debug, Deserialize)]
struct Instance {
    instance_id: String,
    status: String,
    health: String,
    #[serde(default)]
    last_heartbeat: Option<String>,
    #[serde(default)]
    token_revoked: bool,
}

impl Record {
    fn from_json(v: &Value) -> Result<Self, Error> {
        Self::deserialize(v).map_err(|e| {
            Error::Client(crate::client::ClientError::Unexpected {
                url: "the core".into(),
                what: format!("a plugin record that does not parse: {e}"),
            })
        })
    }

    fn manifest_str(&self, key: &str) -> &str {
        self.manifest
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("-")
    }

    fn manifest_list(&self, pointer: &str) -> String {
        let items: Vec<&str> = self
            .manifest
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "-".into()
        } else {
            items.join(", ")
        }
    }

    fn enabled_text(&self) -> String {
        if self.enabled {
            "yes".into()
        } else {
            "no".into()
        }
    }
}

/// Runs one `plugins` command.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let client = args.connect.client()?;
    let out = runtime()?.block_on(execute(&client, args.command, args.connect.json))?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `command` and renders its result.
async fn execute(client: &CoreClient, command: Command, json: bool) -> Result<String, Error> {
    match command {
        Command::List => {
            let records = client.list().await?;
            if json {
                return Ok(pretty(&Value::Array(records)));
            }
            let records = records
                .iter()
                .map(Record::from_json)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(list_text(&records))
        }
        Command::Show { id } => {
            let v = client.show(&id).await?;
            if json {
                Ok(pretty(&v))
            } else {
                Ok(show_text(&Record::from_json(&v)?))
            }
        }
        Command::Disable { id, reason } => {
            let v = client.disable(&id, &reason).await?;
            if json {
                return Ok(pretty(&v));
            }
            let r = Record::from_json(&v)?;
            Ok(format!(
                "disabled {} ({})\n",
                r.plugin_id,
                safe(r.disabled_reason.as_deref().unwrap_or(&reason))
            ))
        }
        Command::Enable { id } => {
            let v = client.enable(&id).await?;
            if json {
                return Ok(pretty(&v));
            }
            Ok(format!("enabled {}\n", Record::from_json(&v)?.plugin_id))
        }
        Command::Approve { id } => {
            let v = client.approve(&id).await?;
            if json {
                return Ok(pretty(&v));
            }
            let r = Record::from_json(&v)?;
            Ok(format!(
                "approved {} ({})\n",
                r.plugin_id,
                r.manifest_list("/traits")
            ))
        }
        Command::Refuse { id, reason } => {
            let v = client.refuse(&id, &reason).await?;
            if json {
                return Ok(pretty(&v));
            }
            let r = Record::from_json(&v)?;
            Ok(format!(
                "refused {} ({})\n",
                r.plugin_id,
                safe(r.disabled_reason.as_deref().unwrap_or(&reason))
            ))
        }
        Command::RevokeBefore { id, all: _, at } => {
            let v = client.revoke_before(id.as_deref(), &at).await?;
            if json {
                return Ok(pretty(&v));
            }
            let revoked = v["revoked"].as_u64().unwrap_or(0);
            let before = safe(v["before"].as_str().unwrap_or(&at));
            Ok(match id {
                Some(id) if revoked == 0 => {
                    format!("{id}: no token issued at or before {before}\n")
                }
                Some(id) => format!("revoked the token of {id} issued at or before {before}\n"),
                None => format!(
                    "revoked the tokens of {revoked} plugin{} issued at or before {before}\n",
                    if revoked == 1 { "" } else { "s" }
                ),
            })
        }
        Command::Deregister { id } => {
            client.deregister(&id).await?;
            if json {
                Ok(pretty(&serde_json::json!({ "deregistered": id })))
            } else {
                Ok(format!("deregistered {id}\n"))
            }
        }
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

fn list_text(records: &[Record]) -> String {
    if records.is_empty() {
        return "no plugins registered\n".into();
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.plugin_id.clone(),
                r.manifest_str("version").to_owned(),
                r.status.clone(),
                r.health.clone(),
                r.enabled_text(),
                r.last_heartbeat.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "VERSION",
            "STATUS",
            "HEALTH",
            "ENABLED",
            "LAST HEARTBEAT",
        ],
        &rows,
    )
}

fn show_text(r: &Record) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("plugin_id", r.plugin_id.clone()),
        ("name", r.manifest_str("name").to_owned()),
        ("version", r.manifest_str("version").to_owned()),
        ("status", r.status.clone()),
        ("health", r.health.clone()),
        ("enabled", r.enabled_text()),
        (
            "disabled_reason",
            r.disabled_reason.clone().unwrap_or_else(|| "-".into()),
        ),
        ("registered_at", r.registered_at.clone()),
        (
            "last_heartbeat",
            r.last_heartbeat.clone().unwrap_or_else(|| "-".into()),
        ),
        ("contracts", r.manifest_list("/contracts")),
        ("traits", r.manifest_list("/traits")),
        (
            "data_classification",
            r.manifest_list("/security/data_classification"),
        ),
        (
            "approval",
            match r.approval.as_deref() {
                Some("pending") => format!("pending ({})", r.pending_traits.join(", ")),
                Some(a) => a.to_owned(),
                None => "-".to_owned(),
            },
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text: String = rows
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {}\n", safe(v)))
        .collect();
    if !r.instances.is_empty() {
        let rows: Vec<Vec<String>> = r
            .instances
            .iter()
            .map(|i| {
                vec![
                    i.instance_id.clone(),
                    i.status.clone(),
                    i.health.clone(),
                    i.last_heartbeat.clone().unwrap_or_else(|| "-".into()),
                    if i.token_revoked { "revoked" } else { "valid" }.to_owned(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(
            &["INSTANCE", "STATUS", "HEALTH", "LAST HEARTBEAT", "TOKEN"],
            &rows,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, enabled: bool) -> Record {
        Record::from_json(&json!({
            "plugin_id": id,
            "manifest": {"id": id, "name": "Evil\u{1b}[2J name", "version": "1.2.3",
                         "contracts": ["IdentityPlugin"], "traits": ["handles_pii"],
                         "security": {"data_classification": ["pii"]}},
            "status": "active", "health": "healthy", "enabled": enabled,
            "disabled_reason": if enabled { Value::Null } else { json!("maintenance") },
            "registered_at": "2026-01-01T00:00:00Z", "last_heartbeat": null,
            "instances": [
                {"instance_id": "default", "status": "active", "health": "healthy",
                 "last_heartbeat": "2026-01-01T00:00:05Z", "token_revoked": false},
                {"instance_id": "pod-\u{1b}b", "status": "stale", "health": "unknown",
                 "last_heartbeat": null, "token_revoked": true}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn list_is_a_table_with_one_row_per_plugin() {
        let t = list_text(&[record("a", true), record("b", false)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  VERSION  STATUS"));
        assert!(lines[1].starts_with("a   1.2.3    active  healthy  yes"));
        assert!(lines[2].contains("no       -"));
        assert_eq!(list_text(&[]), "no plugins registered\n");
    }

    #[test]
    fn show_escapes_what_a_plugin_chose() {
        let t = show_text(&record("a", false));
        assert!(
            t.contains("name                 Evil\\u{1b}[2J name"),
            "{t}"
        );
        assert!(t.contains("disabled_reason      maintenance"));
        assert!(t.contains("traits               handles_pii"));
        assert!(!t.contains('\u{1b}'));
        let instances: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("INSTANCE"))
            .collect();
        assert_eq!(instances.len(), 3, "{t}");
        assert!(instances[1].starts_with("default"), "{t}");
        assert!(instances[1].contains("2026-01-01T00:00:05Z"), "{t}");
        assert!(instances[2].ends_with("revoked"), "{t}");
    }
}
