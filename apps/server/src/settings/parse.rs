//! From raw values (file and environment, by canonical key) to typed [`Settings`], each
//! bad value a one-line error naming the setting.

use super::*;

/// The largest `max_header_bytes` accepted: hyper reads at most ~400 KB of request head.
const MAX_HEADER_BYTES_CAP: usize = 256 * 1024;

/// The longest a write may wait for others to commit with.
const MAX_GROUP_COMMIT_WAIT: Duration = Duration::from_millis(100);

impl Settings {
    pub(super) fn from_raw(raw: &Raw) -> Result<Self, SettingsError> {
        let get = |k: &str| raw.get(k).map(|(n, v)| (n.as_str(), v.as_str()));
        let invalid = |name: &str, reason: String| SettingsError::Invalid {
            name: name.to_owned(),
            reason,
        };
        let duration = |k: &str, default: Duration| -> Result<Duration, SettingsError> {
            match get(k) {
                None => Ok(default),
                Some((n, v)) => humantime::parse_duration(v.trim())
                    .map_err(|e| invalid(n, format!("not a duration like `30s` or `24h`: {e}"))),
            }
        };
        let boolean = |k: &str| -> Result<bool, SettingsError> {
            match get(k) {
                None => Ok(false),
                Some((n, v)) => match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" | "" => Ok(false),
                    _ => Err(invalid(n, "expected true or false".into())),
                },
            }
        };
        let secret = |k: &str| {
            get(k)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };

        let mode = match get("mode") {
            None => Mode::Dev,
            Some((n, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "dev" | "development" => Mode::Dev,
                "production" | "prod" => Mode::Production,
                _ => return Err(invalid(n, "expected `dev` or `production`".into())),
            },
        };
        let bind = match get("bind") {
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
            Some((n, v)) => v
                .trim()
                .parse()
                .map_err(|_| invalid(n, "expected HOST:PORT, e.g. 127.0.0.1:8000".into()))?,
        };
        let data_dir = get("data_dir").map_or_else(
            || PathBuf::from("vivified-data"),
            |(_, v)| PathBuf::from(v.trim()),
        );
        let store_source =
            get("store").map_or_else(|| "VIVIFIED_STORE".to_owned(), |(n, _)| n.to_owned());
        let store = match get("store").map(|(n, v)| (n, v.trim())) {
            None => StoreSetting::Sqlite(data_dir.join("vivified.db")),
            Some((_, "memory")) => StoreSetting::Memory,
            Some((n, v)) => {
                if let Some(path) = v
                    .strip_prefix("sqlite://")
                    .or_else(|| v.strip_prefix("sqlite:"))
                {
                    if path.is_empty() {
                        return Err(invalid(
                            n,
                            "sqlite:// needs a file path, e.g. sqlite://./vivified-data/vivified.db".into(),
                        ));
                    }
                    StoreSetting::Sqlite(PathBuf::from(path))
                } else if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                    StoreSetting::Postgres(Secret::new(v))
                } else {
                    let scheme = v.split(':').next().unwrap_or_default();
                    return Err(invalid(
                        n,
                        format!(
                            "unknown store `{scheme}`: use memory, sqlite://PATH or postgres://…"
                        ),
                    ));
                }
            }
        };
        let db_max_connections = match get("db_max_connections") {
            None => 10,
            Some((n, v)) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|c| (1..=1000).contains(c))
                .ok_or_else(|| invalid(n, "expected a number between 1 and 1000".into()))?,
        };
        // A per-minute limit: on in production by default, off in dev; 0 turns it off.
        let per_minute = |k: &str, production: u32, what: &str| -> Result<u32, SettingsError> {
            match get(k) {
                None if mode == Mode::Production => Ok(production),
                None => Ok(0),
                Some((n, v)) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|c| *c <= 1_000_000)
                    .ok_or_else(|| {
                        invalid(
                            n,
                            format!("expected {what} per minute, 0 to 1000000 (0: no limit)"),
                        )
                    }),
            }
        };
        let registration_rate_limit = per_minute(
            "registration_rate_limit",
            DEFAULT_REGISTRATION_RATE_LIMIT,
            "requests per address",
        )?;
        let auth_failure_limit = per_minute(
            "auth_failure_limit",
            DEFAULT_AUTH_FAILURE_LIMIT,
            "failed authentications",
        )?;
        let bus = match get("bus") {
            None => BusSetting::Memory,
            Some((_, v)) if v.trim() == "memory" => BusSetting::Memory,
            Some((n, v)) if v.trim().starts_with("nats://") || v.trim().starts_with("tls://") => {
                BusSetting::Nats {
                    url: Secret::new(v.trim()),
                    setting: if n == "NATS_URL" {
                        "NATS_URL"
                    } else {
                        "VIVIFIED_BUS"
                    },
                }
            }
            Some((n, v)) => {
                let scheme = v.split(':').next().unwrap_or_default();
                return Err(invalid(
                    n,
                    format!(
                        "bus `{scheme}:…` is not supported: use `memory`, `nats://HOST:PORT` or `tls://HOST:PORT`"
                    ),
                ));
            }
        };
        let nats_path = |k: &str| {
            get(k)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let nats_client_cert = match (nats_path("nats_client_cert"), nats_path("nats_client_key")) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((c, k)),
            (Some(_), None) => {
                return Err(invalid(
                    "VIVIFIED_NATS_CLIENT_KEY",
                    "is not set but VIVIFIED_NATS_CLIENT_CERT is: set both or neither".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "VIVIFIED_NATS_CLIENT_CERT",
                    "is not set but VIVIFIED_NATS_CLIENT_KEY is: set both or neither".into(),
                ));
            }
        };
        let nats_ca_cert = nats_path("nats_ca_cert");
        let event_queue_bound = match get("event_queue_bound") {
            None => 10_000,
            Some((n, v)) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|b| (1..=1_000_000).contains(b))
                .ok_or_else(|| invalid(n, "expected a number between 1 and 1000000".into()))?,
        };
        let events_max_wait = duration("events_max_wait", Duration::from_secs(30))?;
        if events_max_wait > Duration::from_secs(300) {
            return Err(invalid("VIVIFIED_EVENTS_MAX_WAIT", "at most 5m".into()));
        }
        let policy_file = get("policy_file").map(|(_, v)| PathBuf::from(v.trim()));
        let metrics_bind = match get("metrics_bind") {
            None => None,
            Some((n, v)) => Some(
                v.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| invalid(n, "expected an address like `127.0.0.1:9100`".into()))?,
            ),
        };
        let path = |k: &str| {
            get(k)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let tls = match (path("tls_cert"), path("tls_key")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (Some(_), None) => {
                return Err(invalid(
                    "VIVIFIED_TLS_KEY",
                    "is not set but VIVIFIED_TLS_CERT is: set both (PEM files) or neither".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "VIVIFIED_TLS_CERT",
                    "is not set but VIVIFIED_TLS_KEY is: set both (PEM files) or neither".into(),
                ));
            }
        };
        let max_instances = match get("max_instances") {
            None => 64,
            Some((n, v)) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|m| (1..=10_000).contains(m))
                .ok_or_else(|| invalid(n, "expected a number between 1 and 10000".into()))?,
        };
        let max_body_bytes = match get("max_body_bytes") {
            None => 64 * 1024,
            Some((n, v)) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|b| (1024..=16 * 1024 * 1024).contains(b))
                .ok_or_else(|| {
                    invalid(n, "expected a byte count between 1024 and 16777216".into())
                })?,
        };
        let max_header_bytes = match get("max_header_bytes") {
            None => 16 * 1024,
            Some((n, v)) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|b| (1024..=MAX_HEADER_BYTES_CAP).contains(b))
                .ok_or_else(|| {
                    invalid(
                        n,
                        format!("expected a byte count between 1024 and {MAX_HEADER_BYTES_CAP}"),
                    )
                })?,
        };
        let log_format = match get("log_format") {
            None => LogFormat::Json,
            Some((n, v)) => match v.trim() {
                "json" => LogFormat::Json,
                "pretty" | "text" => LogFormat::Pretty,
                _ => return Err(invalid(n, "expected `json` or `pretty`".into())),
            },
        };
        let list = |k: &str| -> Vec<String> {
            get(k)
                .map(|(_, v)| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let heartbeat_interval = duration("heartbeat_interval", Duration::from_secs(10))?;
        let heartbeat_ttl = duration("heartbeat_ttl", heartbeat_interval * 3)?;
        let heartbeat_flush = match get("heartbeat_flush") {
            None => (heartbeat_ttl / 4).min(Duration::from_secs(1)),
            Some((n, _)) => {
                let flush = duration("heartbeat_flush", Duration::ZERO)?;
                if flush >= heartbeat_ttl / 4 {
                    return Err(invalid(
                        n,
                        format!(
                            "must be shorter than a quarter of VIVIFIED_HEARTBEAT_TTL ({}), or 0 to write every heartbeat at once",
                            humantime::format_duration(heartbeat_ttl / 4)
                        ),
                    ));
                }
                flush
            }
        };
        let group_commit_wait = duration("group_commit_wait", Duration::from_millis(2))?;
        if group_commit_wait > MAX_GROUP_COMMIT_WAIT {
            return Err(invalid(
                get("group_commit_wait").map_or("VIVIFIED_GROUP_COMMIT_WAIT", |(n, _)| n),
                "must be at most 100ms (0 turns group commit off)".into(),
            ));
        }
        Ok(Self {
            mode,
            bind,
            dev_allow_remote: boolean("dev_allow_remote")?,
            dev_replace_stale: match get("dev_replace_stale") {
                None => mode == Mode::Dev,
                Some(_) => boolean("dev_replace_stale")?,
            },
            admin_token: secret("admin_token"),
            registration_secret: secret("registration_secret"),
            registration_secret_allowed: boolean("registration_secret_allowed")?,
            break_glass: boolean("break_glass")?,
            oidc: super::oidc::parse(raw)?,
            registration_rate_limit,
            auth_failure_limit,
            max_instances,
            jwt_secret: secret("jwt_secret"),
            jwt_previous_secrets: list("jwt_previous_secrets")
                .into_iter()
                .map(Secret::new)
                .collect(),
            signing_keys: list("signing_keys")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            token_ttl: duration("token_ttl", Duration::from_secs(24 * 3600))?,
            reregister_grace: duration("reregister_grace", Duration::from_secs(7 * 24 * 3600))?,
            heartbeat_interval,
            heartbeat_ttl,
            heartbeat_flush,
            group_commit_wait,
            deregister_after: match get("deregister_after") {
                None => None,
                Some(_) => Some(duration("deregister_after", Duration::ZERO)?),
            },
            sweep_interval: duration(
                "sweep_interval",
                heartbeat_interval.clamp(Duration::from_millis(50), Duration::from_secs(5)),
            )?,
            self_preservation_threshold: match get("self_preservation_threshold") {
                None => 0.5,
                Some((n, v)) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|t| (0.0..=1.0).contains(t))
                    .ok_or_else(|| {
                        invalid(n, "expected a share between 0 and 1, like 0.5".into())
                    })?,
            },
            self_preservation_min_plugins: match get("self_preservation_min_plugins") {
                None => 3,
                Some((n, v)) => v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| invalid(n, "expected a whole number".into()))?,
            },
            store,
            store_source,
            data_dir,
            db_max_connections,
            bus,
            nats_ca_cert,
            nats_client_cert,
            event_queue_bound,
            events_max_wait,
            policy_file,
            metrics_bind,
            tls,
            tls_terminated_by_proxy: boolean("tls_terminated_by_proxy")?,
            max_body_bytes,
            max_header_bytes,
            request_timeout: duration("request_timeout", Duration::from_secs(30))?,
            header_read_timeout: duration("header_read_timeout", Duration::from_secs(10))?,
            allowed_origins: list("allowed_origins"),
            log_level: get("log_level")
                .map_or_else(|| "info".to_owned(), |(_, v)| v.trim().to_owned()),
            log_format,
            audit_key: secret("audit_key"),
            audit_previous_keys: list("audit_previous_keys")
                .into_iter()
                .map(Secret::new)
                .collect(),
            audit_checkpoint_every: match get("audit_checkpoint_every") {
                None => DEFAULT_AUDIT_CHECKPOINT_EVERY,
                Some((n, v)) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|c| (1..=MAX_AUDIT_CHECKPOINT_EVERY).contains(c))
                    .ok_or_else(|| {
                        invalid(
                            n,
                            format!(
                                "expected a number of entries between 1 and {MAX_AUDIT_CHECKPOINT_EVERY}"
                            ),
                        )
                    })?,
            },
            audit_seal_interval: duration("audit_seal_interval", Duration::from_millis(200))?,
        })
    }
}

pub(super) fn read_file(path: &Path, raw: &mut Raw) -> Result<(), SettingsError> {
    let file_err = |reason: String| SettingsError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.message().to_owned()))?;
    for (k, v) in table {
        let Some(key) = KEYS.iter().find(|key| key.key == k) else {
            return Err(file_err(format!("unknown setting `{k}`")));
        };
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| file_err(format!("`{k}` must be a list of strings")))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => return Err(file_err(format!("`{k}` has an unsupported type"))),
        };
        raw.insert(key.key, (k, value));
    }
    Ok(())
}
