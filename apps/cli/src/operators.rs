//! `vivified operators add|list|show|remove` and `vivified operators token
//! create|revoke`: the named people who run a core and their API tokens;
//! `vivified whoami`: who the configured credential is.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use crate::Error;
use crate::connect::Connect;
use crate::error::runtime;
use crate::text::{safe, write_out};

/// `vivified operators <COMMAND>`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create an operator (admin).
    Add {
        /// Its name: a-z or 0-9 first, then a-z, 0-9, '.', '_' or '-' (at most 63).
        name: String,
        /// viewer, auditor, operator or admin.
        #[arg(long)]
        role: String,
        /// When it stops working (RFC 3339), e.g. 2027-06-30T00:00:00Z.
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
    },
    /// List operators by name: name, role, expiry.
    List,
    /// One operator and its tokens (prefix, label, expiry; never a token).
    Show {
        /// The operator's name.
        name: String,
    },
    /// Delete an operator and all its tokens (admin).
    Remove {
        /// The operator's name.
        name: String,
    },
    /// An operator's API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token (admin, or the operator itself): the token alone on stdout,
    /// shown this once.
    Create {
        /// The operator's name.
        name: String,
        /// A note telling it from the operator's others.
        #[arg(long, default_value = "")]
        label: String,
        /// How long it works (1s to 366d), e.g. 30d; default 90d.
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Revoke a token by its prefix (admin, or the operator itself).
    Revoke {
        /// The operator's name.
        name: String,
        /// The token's public prefix (as `show` prints it).
        prefix: String,
    },
}

fn print_json(v: &Value) -> Result<(), Error> {
    write_out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))?;
    Ok(())
}

fn field(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => safe(s).into_owned(),
        Value::Bool(b) => b.to_string(),
        _ => "-".to_owned(),
    }
}

/// Runs one `operators` command.
pub fn run(args: &Args) -> Result<ExitCode, Error> {
    let client = args.connect.client()?;
    let rt = runtime()?;
    let json = args.connect.json;
    match &args.command {
        Command::Add {
            name,
            role,
            expires_at,
        } => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(t) = expires_at {
                body["expires_at"] = json!(t);
            }
            let answer = rt.block_on(client.send(Method::POST, "operators", &[], Some(body)))?;
            let answer = answer.unwrap_or_default();
            if json {
                print_json(&answer)?;
            } else {
                write_out(&format!(
                    "operator {} created with role {}\n",
                    field(&answer, "name"),
                    field(&answer, "role")
                ))?;
            }
        }
        Command::List => {
            let answer =
                rt.block_on(client.get_object("operators", &[], &[("limit", "1000".to_owned())]))?;
            let listed = answer["operators"].as_array().cloned().unwrap_or_default();
            if json {
                print_json(&Value::Array(listed))?;
            } else {
                let lines: String = listed
                    .iter()
                    .map(|o| {
                        format!(
                            "{}  {}  {}\n",
                            field(o, "name"),
                            field(o, "role"),
                            field(o, "expires_at")
                        )
                    })
                    .collect();
                write_out(&lines)?;
            }
        }
        Command::Show { name } => {
            let answer = rt.block_on(client.get_object("operators", &[name], &[]))?;
            if json {
                print_json(&answer)?;
            } else {
                let mut text = format!(
                    "name: {}\nrole: {}\ncreated: {} by {}\nexpires: {}\ntokens:\n",
                    field(&answer, "name"),
                    field(&answer, "role"),
                    field(&answer, "created_at"),
                    field(&answer, "created_by"),
                    field(&answer, "expires_at"),
                );
                for t in answer["tokens"].as_array().into_iter().flatten() {
                    text.push_str(&format!(
                        "  {}  {}  expires {}{}\n",
                        field(t, "prefix"),
                        field(t, "label"),
                        field(t, "expires_at"),
                        if t["expired"] == true {
                            " (expired)"
                        } else {
                            ""
                        },
                    ));
                }
                write_out(&text)?;
            }
        }
        Command::Remove { name } => {
            rt.block_on(client.send(Method::DELETE, "operators", &[name], None))?;
            write_out(&format!("operator {} removed\n", safe(name)))?;
        }
        Command::Token(TokenCommand::Create { name, label, ttl }) => {
            let mut body = json!({ "label": label });
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            let answer = rt
                .block_on(client.send(Method::POST, "operators", &[name, "tokens"], Some(body)))?
                .unwrap_or_default();
            if json {
                print_json(&answer)?;
            } else {
                write_out(&format!("{}\n", field(&answer, "token")))?;
                eprintln!(
                    "token {} of {}: works until {} (give it as VIVIFIED_OPERATOR_TOKEN; it is not shown again)",
                    field(&answer, "prefix"),
                    safe(name),
                    field(&answer, "expires_at"),
                );
            }
        }
        Command::Token(TokenCommand::Revoke { name, prefix }) => {
            rt.block_on(client.send(Method::DELETE, "operators", &[name, "tokens", prefix], None))?;
            write_out(&format!(
                "token {} of {} revoked\n",
                safe(prefix),
                safe(name)
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vivified whoami [--core-url URL] [--json]`
#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    connect: Connect,
}

/// Prints who the configured credential is.
pub fn whoami(args: &WhoamiArgs) -> Result<ExitCode, Error> {
    let client = args.connect.client()?;
    let answer = runtime()?.block_on(client.get_object("whoami", &[], &[]))?;
    if args.connect.json {
        print_json(&answer)?;
    } else if answer["kind"] == "operator" {
        write_out(&format!(
            "{} (operator, role {}, by {}{}; expires {})\n",
            field(&answer, "name"),
            field(&answer, "role"),
            field(&answer, "auth"),
            match &answer["credential"] {
                Value::String(p) => format!(" {}", safe(p)),
                _ => String::new(),
            },
            field(&answer, "expires_at"),
        ))?;
    } else {
        write_out(&format!(
            "{} ({}; expires {})\n",
            field(&answer, "name"),
            field(&answer, "kind"),
            field(&answer, "expires_at")
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
