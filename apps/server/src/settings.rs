//! Typed settings, loaded in layers: defaults → optional TOML file → environment.
//!
//! Every setting has one canonical key (the TOML key) and environment names: the
//! `VIVIFIED_*` name always wins over the seed's name (`JWT_SECRET`, `ALLOWED_ORIGINS`,
//! `LOG_LEVEL`, `DATABASE_URL`, `NATS_URL`) when both are set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vivified_domain::Mode;
use vivified_ports::Secret;

/// A setting: its TOML key and its environment names, strongest first.
struct Key {
    key: &'static str,
    env: &'static [&'static str],
}

const KEYS: &[Key] = &[
    Key {
        key: "mode",
        env: &["VIVIFIED_MODE"],
    },
    Key {
        key: "bind",
        env: &["VIVIFIED_BIND"],
    },
    Key {
        key: "dev_allow_remote",
        env: &["VIVIFIED_DEV_ALLOW_REMOTE"],
    },
    Key {
        key: "admin_token",
        env: &["VIVIFIED_ADMIN_TOKEN"],
    },
    Key {
        key: "registration_secret",
        env: &["VIVIFIED_REGISTRATION_SECRET"],
    },
    Key {
        key: "jwt_secret",
        env: &["VIVIFIED_JWT_SECRET", "JWT_SECRET"],
    },
    Key {
        key: "jwt_previous_secrets",
        env: &["VIVIFIED_JWT_PREVIOUS_SECRETS"],
    },
    Key {
        key: "token_ttl",
        env: &["VIVIFIED_TOKEN_TTL"],
    },
    Key {
        key: "reregister_grace",
        env: &["VIVIFIED_REREGISTER_GRACE"],
    },
    Key {
        key: "heartbeat_interval",
        env: &["VIVIFIED_HEARTBEAT_INTERVAL"],
    },
    Key {
        key: "heartbeat_ttl",
        env: &["VIVIFIED_HEARTBEAT_TTL"],
    },
    Key {
        key: "deregister_after",
        env: &["VIVIFIED_DEREGISTER_AFTER"],
    },
    Key {
        key: "sweep_interval",
        env: &["VIVIFIED_SWEEP_INTERVAL"],
    },
    Key {
        key: "self_preservation_threshold",
        env: &["VIVIFIED_SELF_PRESERVATION_THRESHOLD"],
    },
    Key {
        key: "self_preservation_min_plugins",
        env: &["VIVIFIED_SELF_PRESERVATION_MIN_PLUGINS"],
    },
    Key {
        key: "store",
        env: &["VIVIFIED_STORE", "DATABASE_URL"],
    },
    Key {
        key: "data_dir",
        env: &["VIVIFIED_DATA_DIR"],
    },
    Key {
        key: "db_max_connections",
        env: &["VIVIFIED_DB_MAX_CONNECTIONS"],
    },
    Key {
        key: "bus",
        env: &["VIVIFIED_BUS", "NATS_URL"],
    },
    Key {
        key: "nats_ca_cert",
        env: &["VIVIFIED_NATS_CA_CERT"],
    },
    Key {
        key: "nats_client_cert",
        env: &["VIVIFIED_NATS_CLIENT_CERT"],
    },
    Key {
        key: "nats_client_key",
        env: &["VIVIFIED_NATS_CLIENT_KEY"],
    },
    Key {
        key: "event_queue_bound",
        env: &["VIVIFIED_EVENT_QUEUE_BOUND"],
    },
    Key {
        key: "events_max_wait",
        env: &["VIVIFIED_EVENTS_MAX_WAIT"],
    },
    Key {
        key: "policy_file",
        env: &["VIVIFIED_POLICY_FILE"],
    },
    Key {
        key: "metrics_bind",
        env: &["VIVIFIED_METRICS_BIND"],
    },
    Key {
        key: "tls_cert",
        env: &["VIVIFIED_TLS_CERT"],
    },
    Key {
        key: "tls_key",
        env: &["VIVIFIED_TLS_KEY"],
    },
    Key {
        key: "tls_terminated_by_proxy",
        env: &["VIVIFIED_TLS_TERMINATED_BY_PROXY"],
    },
    Key {
        key: "max_body_bytes",
        env: &["VIVIFIED_MAX_BODY_BYTES"],
    },
    Key {
        key: "request_timeout",
        env: &["VIVIFIED_REQUEST_TIMEOUT"],
    },
    Key {
        key: "header_read_timeout",
        env: &["VIVIFIED_HEADER_READ_TIMEOUT"],
    },
    Key {
        key: "allowed_origins",
        env: &["VIVIFIED_ALLOWED_ORIGINS", "ALLOWED_ORIGINS"],
    },
    Key {
        key: "log_level",
        env: &["VIVIFIED_LOG_LEVEL", "LOG_LEVEL"],
    },
    Key {
        key: "log_format",
        env: &["VIVIFIED_LOG_FORMAT"],
    },
    Key {
        key: "audit_key",
        env: &["VIVIFIED_AUDIT_KEY"],
    },
    Key {
        key: "audit_checkpoint_every",
        env: &["VIVIFIED_AUDIT_CHECKPOINT_EVERY"],
    },
    Key {
        key: "audit_seal_interval",
        env: &["VIVIFIED_AUDIT_SEAL_INTERVAL"],
    },
];

/// Secrets that ship in examples and must never guard a production core.
const KNOWN_DEFAULT_SECRETS: &[&str] = &[
    "change-this-secret",
    "changeme",
    "change-me",
    "secret",
    "your-secret-key",
    "jwt-secret",
    "password",
];

/// Default of `VIVIFIED_AUDIT_CHECKPOINT_EVERY`.
pub const DEFAULT_AUDIT_CHECKPOINT_EVERY: u64 = 1000;
/// Largest `VIVIFIED_AUDIT_CHECKPOINT_EVERY`.
pub const MAX_AUDIT_CHECKPOINT_EVERY: u64 = 10_000_000;
/// Longest `VIVIFIED_AUDIT_SEAL_INTERVAL`: sealing lag is what `/ready` reports, and
/// entries are only readable and verifiable once sealed.
pub const MAX_AUDIT_SEAL_INTERVAL: Duration = Duration::from_secs(60);

/// Where plugin records live.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSetting {
    /// In memory: lost on restart.
    Memory,
    /// An SQLite file (the embedded default: `<data_dir>/vivified.db`).
    Sqlite(PathBuf),
    /// A Postgres database; the URL may hold a password, so it is never printed.
    Postgres(Secret),
}

impl std::fmt::Debug for StoreSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Postgres(_) => f.write_str("postgres://[redacted]"),
        }
    }
}

/// Where events travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusSetting {
    /// In process (single replica).
    Memory,
    /// NATS with JetStream; the URL may hold credentials, so it is never printed.
    Nats {
        /// The URL.
        url: Secret,
        /// The setting it came from (`VIVIFIED_BUS` or `NATS_URL`).
        setting: &'static str,
    },
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (default).
    Json,
    /// Human-readable.
    Pretty,
}

/// The server's settings, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Dev or production.
    pub mode: Mode,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Dev mode may bind a non-loopback address.
    pub dev_allow_remote: bool,
    /// Admin token; generated in dev mode when missing.
    pub admin_token: Option<Secret>,
    /// Registration secret; required in production.
    pub registration_secret: Option<Secret>,
    /// JWT signing secret; generated in dev mode when missing.
    pub jwt_secret: Option<Secret>,
    /// Older JWT secrets whose tokens still verify.
    pub jwt_previous_secrets: Vec<Secret>,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// How long an expired token whose `jti` is current may re-register.
    pub reregister_grace: Duration,
    /// Heartbeat interval told to plugins.
    pub heartbeat_interval: Duration,
    /// Silence after which a plugin is stale (default 3 × interval).
    pub heartbeat_ttl: Duration,
    /// Silence after which a plugin is deregistered (`None`: never).
    pub deregister_after: Option<Duration>,
    /// How often this replica sweeps liveness deadlines.
    pub sweep_interval: Duration,
    /// Share of live plugins going silent in one sweep above which none is expired.
    pub self_preservation_threshold: f64,
    /// Self-preservation applies from this many live plugins on.
    pub self_preservation_min_plugins: u64,
    /// Plugin store backend.
    pub store: StoreSetting,
    /// The setting `store` came from (for error messages).
    pub store_source: String,
    /// Directory for the SQLite file and dev-mode secrets.
    pub data_dir: PathBuf,
    /// Postgres connection pool size.
    pub db_max_connections: u32,
    /// Event bus backend.
    pub bus: BusSetting,
    /// An extra CA (PEM) trusted for a `tls://` NATS server, besides the system's roots.
    pub nats_ca_cert: Option<PathBuf>,
    /// A client certificate and key (PEM) for NATS servers that verify clients.
    pub nats_client_cert: Option<(PathBuf, PathBuf)>,
    /// Events kept per plugin until it pulls them; beyond it the oldest are dropped
    /// and counted.
    pub event_queue_bound: usize,
    /// Longest `wait` of a pull of events (the long poll).
    pub events_max_wait: Duration,
    /// A JSON policy file replacing the built-in rules.
    pub policy_file: Option<PathBuf>,
    /// A separate address for `GET /metrics` (`None`: served on the API listener).
    /// Always plain HTTP.
    pub metrics_bind: Option<SocketAddr>,
    /// The certificate chain and key the API listener serves HTTPS with (`None`: plain
    /// HTTP).
    pub tls: Option<crate::tls::TlsFiles>,
    /// A proxy in front of the core terminates TLS, so production mode may listen in
    /// plain HTTP on a non-loopback address.
    pub tls_terminated_by_proxy: bool,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Bound on a whole request.
    pub request_timeout: Duration,
    /// Bound on a connection with no request in service (silent, idle, or sending a
    /// request's headers) that writes no response: see `conn_watch`.
    pub header_read_timeout: Duration,
    /// Exact CORS origins (empty: no CORS).
    pub allowed_origins: Vec<String>,
    /// Log filter (`RUST_LOG` wins when set).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// HMAC key of the audit chain; generated in dev mode when missing.
    pub audit_key: Option<Secret>,
    /// A checkpoint goes to the log every this many sealed audit entries.
    pub audit_checkpoint_every: u64,
    /// How long the audit sealer sleeps when nothing (or less than a batch) was pending.
    pub audit_seal_interval: Duration,
}

/// A setting is missing or wrong; the message is one line and names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value does not parse.
    #[error("{name}: {reason}")]
    Invalid {
        /// The environment name (or TOML key) of the setting.
        name: String,
        /// Why.
        reason: String,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Production mode refuses to start.
    #[error("production mode refuses to start: {0}")]
    Production(String),
    /// Dev mode refuses a non-loopback bind.
    #[error(
        "dev mode refuses to listen on non-loopback {0}: set VIVIFIED_DEV_ALLOW_REMOTE=true to allow it, or use production mode"
    )]
    DevRemote(SocketAddr),
}

/// Raw values by canonical key, with the name they came from (for error messages).
type Raw = BTreeMap<&'static str, (String, String)>;

impl Settings {
    /// Loads settings from an optional TOML `file`, then the environment as `env` reports
    /// it; `bind_override` (the `--bind` flag) wins over both.
    ///
    /// # Errors
    /// [`SettingsError`] naming the first setting that is wrong.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        bind_override: Option<SocketAddr>,
    ) -> Result<Self, SettingsError> {
        let mut raw = Raw::new();
        if let Some(path) = file {
            read_file(path, &mut raw)?;
        }
        for k in KEYS {
            if let Some((name, value)) = k
                .env
                .iter()
                // An empty variable (`DATABASE_URL=` in a .env) counts as unset.
                .find_map(|name| {
                    env(name)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (name.to_string(), v))
                })
            {
                raw.insert(k.key, (name, value));
            }
        }
        let mut settings = Self::from_raw(&raw)?;
        if let Some(bind) = bind_override {
            settings.bind = bind;
        }
        settings.check()?;
        Ok(settings)
    }

    fn from_raw(raw: &Raw) -> Result<Self, SettingsError> {
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
        Ok(Self {
            mode,
            bind,
            dev_allow_remote: boolean("dev_allow_remote")?,
            admin_token: secret("admin_token"),
            registration_secret: secret("registration_secret"),
            jwt_secret: secret("jwt_secret"),
            jwt_previous_secrets: list("jwt_previous_secrets")
                .into_iter()
                .map(Secret::new)
                .collect(),
            token_ttl: duration("token_ttl", Duration::from_secs(24 * 3600))?,
            reregister_grace: duration("reregister_grace", Duration::from_secs(7 * 24 * 3600))?,
            heartbeat_interval,
            heartbeat_ttl: duration("heartbeat_ttl", heartbeat_interval * 3)?,
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
            request_timeout: duration("request_timeout", Duration::from_secs(30))?,
            header_read_timeout: duration("header_read_timeout", Duration::from_secs(10))?,
            allowed_origins: list("allowed_origins"),
            log_level: get("log_level")
                .map_or_else(|| "info".to_owned(), |(_, v)| v.trim().to_owned()),
            log_format,
            audit_key: secret("audit_key"),
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

    /// The registry's settings taken from these.
    pub fn registry_config(&self) -> vivified_domain::RegistryConfig {
        vivified_domain::RegistryConfig {
            mode: self.mode,
            admin_token: self.admin_token.clone(),
            registration_secret: self.registration_secret.clone(),
            heartbeat_interval: self.heartbeat_interval,
            reregister_grace: self.reregister_grace,
            heartbeat_ttl: self.heartbeat_ttl,
            deregister_after: self.deregister_after,
            self_preservation_threshold: self.self_preservation_threshold,
            self_preservation_min_live: self.self_preservation_min_plugins,
            ..vivified_domain::RegistryConfig::default()
        }
    }

    fn check(&self) -> Result<(), SettingsError> {
        let positive = [
            ("VIVIFIED_TOKEN_TTL", self.token_ttl),
            ("VIVIFIED_HEARTBEAT_INTERVAL", self.heartbeat_interval),
            ("VIVIFIED_HEARTBEAT_TTL", self.heartbeat_ttl),
            ("VIVIFIED_SWEEP_INTERVAL", self.sweep_interval),
            ("VIVIFIED_REQUEST_TIMEOUT", self.request_timeout),
            ("VIVIFIED_HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("VIVIFIED_AUDIT_SEAL_INTERVAL", self.audit_seal_interval),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(SettingsError::Invalid {
                    name: name.into(),
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if self.token_ttl > Duration::from_secs(366 * 24 * 3600) {
            return Err(SettingsError::Invalid {
                name: "VIVIFIED_TOKEN_TTL".into(),
                reason: "must be at most 366 days".into(),
            });
        }
        let invalid = |name: &str, reason: &str| {
            Err(SettingsError::Invalid {
                name: name.into(),
                reason: reason.into(),
            })
        };
        if self.mode == Mode::Production {
            for (name, d) in [
                ("VIVIFIED_HEARTBEAT_INTERVAL", self.heartbeat_interval),
                ("VIVIFIED_HEARTBEAT_TTL", self.heartbeat_ttl),
                ("VIVIFIED_SWEEP_INTERVAL", self.sweep_interval),
            ] {
                if d < Duration::from_secs(1) {
                    return invalid(name, "sub-second values are for dev mode only");
                }
            }
        }
        if self.audit_seal_interval > MAX_AUDIT_SEAL_INTERVAL {
            return invalid("VIVIFIED_AUDIT_SEAL_INTERVAL", "must be at most 1m");
        }
        if let Some(key) = &self.audit_key
            && key.expose().len() < vivified_domain::audit_chain::ChainKey::MIN_LEN
        {
            return invalid(
                "VIVIFIED_AUDIT_KEY",
                "must be at least 32 bytes; generate one with `openssl rand -hex 32`",
            );
        }
        if self.heartbeat_ttl < self.heartbeat_interval {
            return invalid(
                "VIVIFIED_HEARTBEAT_TTL",
                "must be at least VIVIFIED_HEARTBEAT_INTERVAL (default: 3 × the interval)",
            );
        }
        if let Some(after) = self.deregister_after {
            if after <= self.heartbeat_ttl {
                return invalid(
                    "VIVIFIED_DEREGISTER_AFTER",
                    "must be longer than VIVIFIED_HEARTBEAT_TTL (a plugin is stale before it is deregistered)",
                );
            }
            if self.mode == Mode::Production && after < Duration::from_secs(60) {
                return invalid(
                    "VIVIFIED_DEREGISTER_AFTER",
                    "must be at least one minute in production mode",
                );
            }
        }
        for origin in &self.allowed_origins {
            if origin == "*" || !(origin.starts_with("https://") || origin.starts_with("http://")) {
                return Err(SettingsError::Invalid {
                    name: "ALLOWED_ORIGINS".into(),
                    reason: "list exact origins like https://app.example.com; `*` is not allowed"
                        .into(),
                });
            }
        }
        match self.mode {
            Mode::Dev => {
                if !self.bind.ip().is_loopback() && !self.dev_allow_remote {
                    return Err(SettingsError::DevRemote(self.bind));
                }
            }
            Mode::Production => self.check_production()?,
        }
        Ok(())
    }

    /// The API listener would serve plain HTTP beyond this host with no proxy said to
    /// terminate TLS in front of it (refused in production, a warning in dev mode).
    pub fn plain_http_exposed(&self) -> bool {
        self.tls.is_none() && !self.bind.ip().is_loopback() && !self.tls_terminated_by_proxy
    }

    fn check_production(&self) -> Result<(), SettingsError> {
        let refuse = |m: &str| Err(SettingsError::Production(m.to_owned()));
        let Some(jwt) = &self.jwt_secret else {
            return refuse("JWT_SECRET (or VIVIFIED_JWT_SECRET) is not set");
        };
        let jwt = jwt.expose();
        if jwt.len() < 32 {
            return refuse("JWT_SECRET must be at least 32 bytes");
        }
        if is_weak(jwt) {
            return refuse(
                "JWT_SECRET is a known default or has too little variety; generate one with `openssl rand -base64 48`",
            );
        }
        let Some(admin) = &self.admin_token else {
            return refuse("VIVIFIED_ADMIN_TOKEN is not set");
        };
        let Some(registration) = &self.registration_secret else {
            return refuse("VIVIFIED_REGISTRATION_SECRET is not set");
        };
        for (name, s) in [
            ("VIVIFIED_ADMIN_TOKEN", admin),
            ("VIVIFIED_REGISTRATION_SECRET", registration),
        ] {
            if s.expose().len() < 16 || is_weak(s.expose()) {
                return refuse(&format!(
                    "{name} must be at least 16 bytes and not a known default"
                ));
            }
            if s.expose() == jwt {
                return refuse(&format!("{name} must differ from JWT_SECRET"));
            }
        }
        if admin == registration {
            return refuse("VIVIFIED_ADMIN_TOKEN and VIVIFIED_REGISTRATION_SECRET must differ");
        }
        if self.plain_http_exposed() {
            return refuse(&format!(
                "plain HTTP on non-loopback {}: set VIVIFIED_TLS_CERT and VIVIFIED_TLS_KEY, or VIVIFIED_TLS_TERMINATED_BY_PROXY=true when a proxy in front terminates TLS",
                self.bind
            ));
        }
        let Some(audit) = &self.audit_key else {
            return refuse("VIVIFIED_AUDIT_KEY is not set");
        };
        if is_weak(audit.expose()) {
            return refuse(
                "VIVIFIED_AUDIT_KEY is a known default or has too little variety; generate one with `openssl rand -hex 32`",
            );
        }
        for (name, s) in [
            ("JWT_SECRET", jwt),
            ("VIVIFIED_ADMIN_TOKEN", admin.expose()),
            ("VIVIFIED_REGISTRATION_SECRET", registration.expose()),
        ] {
            if audit.expose() == s {
                return refuse(&format!("VIVIFIED_AUDIT_KEY must differ from {name}"));
            }
        }
        Ok(())
    }
}

fn is_weak(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    let distinct = lower
        .bytes()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    KNOWN_DEFAULT_SECRETS.iter().any(|d| lower == *d)
        || lower.contains("change-this")
        || lower.contains("changeme")
        || distinct < 8
}

fn read_file(path: &Path, raw: &mut Raw) -> Result<(), SettingsError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(None, |k| map.get(k).cloned(), None)
    }

    const GOOD_JWT: &str = "Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";
    const GOOD_AUDIT_KEY: &str = "aud-4Tb8Nc2Vx6Lm0Qw3Er7Ty1Ui5Op9As";

    fn prod(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            ("VIVIFIED_MODE", "production"),
            ("JWT_SECRET", GOOD_JWT),
            ("VIVIFIED_ADMIN_TOKEN", "adm-8f3k2j5h7g9d1s"),
            ("VIVIFIED_REGISTRATION_SECRET", "reg-2m4n6b8v0c1x3z"),
            ("VIVIFIED_AUDIT_KEY", GOOD_AUDIT_KEY),
        ];
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn defaults() {
        let s = load(&[]).unwrap();
        assert_eq!(s.mode, Mode::Dev);
        assert_eq!(s.bind, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(s.token_ttl, Duration::from_secs(86400));
        assert_eq!(s.reregister_grace, Duration::from_secs(7 * 86400));
        assert_eq!(s.max_body_bytes, 65536);
        assert!(s.allowed_origins.is_empty());
        assert_eq!(
            s.store,
            StoreSetting::Sqlite(PathBuf::from("vivified-data/vivified.db"))
        );
        let s = load(&[("VIVIFIED_DATA_DIR", "/var/lib/vivified")]).unwrap();
        assert_eq!(
            s.store,
            StoreSetting::Sqlite(PathBuf::from("/var/lib/vivified/vivified.db"))
        );
        let s = load(&[
            ("VIVIFIED_STORE", "memory"),
            ("DATABASE_URL", "postgres://x@h/db"),
        ])
        .unwrap();
        assert_eq!(
            s.store,
            StoreSetting::Memory,
            "VIVIFIED_STORE wins over DATABASE_URL"
        );
        let s = load(&[("DATABASE_URL", "postgres://u:pw@h/db")]).unwrap();
        assert!(matches!(s.store, StoreSetting::Postgres(_)));
        assert_eq!(s.store_source, "DATABASE_URL");
        assert!(
            !format!("{s:?}").contains("pw@"),
            "a store URL never prints"
        );
        let s = load(&[("VIVIFIED_STORE", "sqlite:///tmp/x.db")]).unwrap();
        assert_eq!(s.store, StoreSetting::Sqlite(PathBuf::from("/tmp/x.db")));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let s = load(&[
            ("DATABASE_URL", ""),
            ("NATS_URL", " "),
            ("VIVIFIED_STORE", "memory"),
        ])
        .unwrap();
        assert_eq!(s.store, StoreSetting::Memory);
        let s = load(&[("VIVIFIED_JWT_SECRET", ""), ("JWT_SECRET", "seed-value")]).unwrap();
        assert_eq!(s.jwt_secret.unwrap().expose(), "seed-value");
    }

    #[test]
    fn vivified_names_win_over_seed_names() {
        let s = load(&[
            ("JWT_SECRET", "seed"),
            ("VIVIFIED_JWT_SECRET", "ours"),
            ("LOG_LEVEL", "debug"),
        ])
        .unwrap();
        assert_eq!(s.jwt_secret.unwrap().expose(), "ours");
        assert_eq!(s.log_level, "debug");
        let s = load(&[("ALLOWED_ORIGINS", "https://a.example, https://b.example")]).unwrap();
        assert_eq!(
            s.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn production_refusals_name_the_setting() {
        assert!(load(&prod(&[])).is_ok());
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("JWT_SECRET", "")], "JWT_SECRET"),
            (&[("JWT_SECRET", "short")], "at least 32 bytes"),
            (
                &[("JWT_SECRET", "change-this-secret-change-this-secret")],
                "known default",
            ),
            (
                &[("JWT_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")],
                "known default",
            ),
            (&[("VIVIFIED_ADMIN_TOKEN", "")], "VIVIFIED_ADMIN_TOKEN"),
            (
                &[("VIVIFIED_REGISTRATION_SECRET", "")],
                "VIVIFIED_REGISTRATION_SECRET",
            ),
            (
                &[("VIVIFIED_REGISTRATION_SECRET", "adm-8f3k2j5h7g9d1s")],
                "must differ",
            ),
        ];
        for (over, needle) in cases {
            let mut env = prod(&[]);
            for (k, v) in *over {
                env.retain(|(ek, _)| ek != k);
                env.push((k, v));
            }
            let err = load(&env).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn dev_refuses_remote_bind_unless_allowed() {
        assert!(matches!(
            load(&[("VIVIFIED_BIND", "0.0.0.0:8000")]),
            Err(SettingsError::DevRemote(_))
        ));
        assert!(
            load(&[
                ("VIVIFIED_BIND", "0.0.0.0:8000"),
                ("VIVIFIED_DEV_ALLOW_REMOTE", "true")
            ])
            .is_ok()
        );
    }

    #[test]
    fn production_refuses_plain_http_beyond_loopback() {
        let err = load(&prod(&[("VIVIFIED_BIND", "0.0.0.0:8000")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "production mode refuses to start: plain HTTP on non-loopback 0.0.0.0:8000"
            ),
            "{err}"
        );
        assert!(
            err.contains("VIVIFIED_TLS_CERT") && err.contains("VIVIFIED_TLS_TERMINATED_BY_PROXY")
        );
        assert!(!err.contains('\n'), "one line: {err}");
        // A proxy terminates TLS, or the core does, or nothing leaves the host.
        let s = load(&prod(&[
            ("VIVIFIED_BIND", "0.0.0.0:8000"),
            ("VIVIFIED_TLS_TERMINATED_BY_PROXY", "true"),
        ]))
        .unwrap();
        assert!(s.tls_terminated_by_proxy && !s.plain_http_exposed());
        let s = load(&prod(&[
            ("VIVIFIED_BIND", "0.0.0.0:8000"),
            ("VIVIFIED_TLS_CERT", "/etc/vivified/tls/tls.crt"),
            ("VIVIFIED_TLS_KEY", "/etc/vivified/tls/tls.key"),
        ]))
        .unwrap();
        assert_eq!(
            s.tls,
            Some(crate::tls::TlsFiles {
                cert: PathBuf::from("/etc/vivified/tls/tls.crt"),
                key: PathBuf::from("/etc/vivified/tls/tls.key"),
            })
        );
        assert!(load(&prod(&[("VIVIFIED_BIND", "127.0.0.1:8000")])).is_ok());
        assert!(load(&prod(&[("VIVIFIED_BIND", "[::1]:8000")])).is_ok());
        // Dev mode allowed remote: a warning at start-up, not a refusal.
        let s = load(&[
            ("VIVIFIED_BIND", "0.0.0.0:8000"),
            ("VIVIFIED_DEV_ALLOW_REMOTE", "true"),
        ])
        .unwrap();
        assert!(s.plain_http_exposed());
    }

    #[test]
    fn tls_cert_and_key_come_together() {
        for (pairs, missing) in [
            (&[("VIVIFIED_TLS_CERT", "/c.pem")][..], "VIVIFIED_TLS_KEY"),
            (&[("VIVIFIED_TLS_KEY", "/k.pem")][..], "VIVIFIED_TLS_CERT"),
        ] {
            match load(pairs) {
                Err(e @ SettingsError::Invalid { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(missing), "{msg}");
                    assert!(!msg.contains('\n'), "{msg}");
                }
                other => panic!("{pairs:?}: expected a refusal, got {other:?}"),
            }
        }
        assert!(load(&[("VIVIFIED_TLS_TERMINATED_BY_PROXY", "perhaps")]).is_err());
        let s = load(&[]).unwrap();
        assert!(s.tls.is_none() && !s.tls_terminated_by_proxy);
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for (k, v) in [
            ("VIVIFIED_TOKEN_TTL", "soon"),
            ("VIVIFIED_MODE", "staging"),
            ("VIVIFIED_BIND", "nowhere"),
            ("VIVIFIED_MAX_BODY_BYTES", "12"),
            ("ALLOWED_ORIGINS", "*"),
            ("DATABASE_URL", "mysql://u:p@h/db"),
            ("VIVIFIED_STORE", "sqlite://"),
        ] {
            let err = load(&[(k, v)]).expect_err(k).to_string();
            assert!(
                err.contains(k.trim_start_matches("VIVIFIED_")) || err.contains(k),
                "{err} names {k}"
            );
            assert!(
                !err.contains("u:p"),
                "never echo a URL's credentials: {err}"
            );
        }
    }

    #[test]
    fn file_layer_under_env() {
        let dir = std::env::temp_dir().join(format!("vivified-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("core.toml");
        std::fs::write(&path, "token_ttl = \"1h\"\nheartbeat_interval = \"5s\"\nallowed_origins = [\"https://x.example\"]\n").unwrap();
        let env: BTreeMap<String, String> =
            [("VIVIFIED_HEARTBEAT_INTERVAL".to_string(), "7s".to_string())].into();
        let s = Settings::load(Some(&path), |k| env.get(k).cloned(), None).unwrap();
        assert_eq!(s.token_ttl, Duration::from_secs(3600));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(7));
        assert_eq!(s.allowed_origins, ["https://x.example"]);
        // Numbers may be written as TOML numbers.
        std::fs::write(&path, "self_preservation_threshold = 0.75\n").unwrap();
        let s = Settings::load(Some(&path), |_| None, None).unwrap();
        assert!((s.self_preservation_threshold - 0.75).abs() < f64::EPSILON);
        std::fs::write(&path, "nonsense_key = 1\n").unwrap();
        assert!(
            Settings::load(Some(&path), |_| None, None)
                .unwrap_err()
                .to_string()
                .contains("nonsense_key")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn liveness_defaults_follow_the_heartbeat_interval() {
        let s = load(&[]).unwrap();
        assert_eq!(s.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(s.heartbeat_ttl, Duration::from_secs(30), "3 × the interval");
        assert_eq!(s.deregister_after, None, "off by default");
        assert_eq!(s.sweep_interval, Duration::from_secs(5));
        assert!((s.self_preservation_threshold - 0.5).abs() < f64::EPSILON);
        let s = load(&[("VIVIFIED_HEARTBEAT_INTERVAL", "200ms")]).unwrap();
        assert_eq!(s.heartbeat_ttl, Duration::from_millis(600));
        assert_eq!(s.sweep_interval, Duration::from_millis(200));
        let c = s.registry_config();
        assert_eq!(c.heartbeat_ttl, Duration::from_millis(600));
        assert_eq!(c.deregister_after, None);
    }

    #[test]
    fn liveness_settings_are_checked() {
        let bad = |pairs: &[(&str, &str)], name: &str| match load(pairs) {
            Err(SettingsError::Invalid { name: n, .. }) => assert_eq!(n, name, "{pairs:?}"),
            other => panic!("{pairs:?}: expected {name} to be refused, got {other:?}"),
        };
        bad(
            &[("VIVIFIED_HEARTBEAT_TTL", "5s")],
            "VIVIFIED_HEARTBEAT_TTL",
        );
        bad(
            &[("VIVIFIED_DEREGISTER_AFTER", "30s")],
            "VIVIFIED_DEREGISTER_AFTER",
        );
        bad(
            &[("VIVIFIED_DEREGISTER_AFTER", "soon")],
            "VIVIFIED_DEREGISTER_AFTER",
        );
        bad(
            &[("VIVIFIED_SWEEP_INTERVAL", "0s")],
            "VIVIFIED_SWEEP_INTERVAL",
        );
        bad(
            &[("VIVIFIED_SELF_PRESERVATION_THRESHOLD", "1.5")],
            "VIVIFIED_SELF_PRESERVATION_THRESHOLD",
        );
        bad(
            &[("VIVIFIED_SELF_PRESERVATION_THRESHOLD", "half")],
            "VIVIFIED_SELF_PRESERVATION_THRESHOLD",
        );
        bad(
            &prod(&[("VIVIFIED_DEREGISTER_AFTER", "45s")]),
            "VIVIFIED_DEREGISTER_AFTER",
        );
        bad(
            &prod(&[("VIVIFIED_SWEEP_INTERVAL", "100ms")]),
            "VIVIFIED_SWEEP_INTERVAL",
        );
        let s = load(&prod(&[("VIVIFIED_DEREGISTER_AFTER", "10m")])).unwrap();
        assert_eq!(s.deregister_after, Some(Duration::from_secs(600)));
        // Sub-second values are fine in dev mode, so tests run fast.
        let s = load(&[
            ("VIVIFIED_HEARTBEAT_INTERVAL", "100ms"),
            ("VIVIFIED_HEARTBEAT_TTL", "300ms"),
            ("VIVIFIED_DEREGISTER_AFTER", "1s"),
            ("VIVIFIED_SWEEP_INTERVAL", "50ms"),
            ("VIVIFIED_SELF_PRESERVATION_THRESHOLD", "0.8"),
        ])
        .unwrap();
        assert_eq!(s.deregister_after, Some(Duration::from_secs(1)));
        assert!((s.self_preservation_threshold - 0.8).abs() < f64::EPSILON);
    }

    #[test]
    fn audit_defaults() {
        let s = load(&[]).unwrap();
        assert!(s.audit_key.is_none(), "dev mode generates it at start-up");
        assert_eq!(s.audit_checkpoint_every, 1000);
        assert_eq!(s.audit_seal_interval, Duration::from_millis(200));
        let s = load(&[
            ("VIVIFIED_AUDIT_KEY", GOOD_AUDIT_KEY),
            ("VIVIFIED_AUDIT_CHECKPOINT_EVERY", "50"),
            ("VIVIFIED_AUDIT_SEAL_INTERVAL", "20ms"),
        ])
        .unwrap();
        assert_eq!(s.audit_key.as_ref().unwrap().expose(), GOOD_AUDIT_KEY);
        assert_eq!(s.audit_checkpoint_every, 50);
        assert_eq!(s.audit_seal_interval, Duration::from_millis(20));
        assert!(
            !format!("{s:?}").contains(GOOD_AUDIT_KEY),
            "the audit key never prints"
        );
    }

    #[test]
    fn audit_settings_are_checked() {
        for (k, v) in [
            ("VIVIFIED_AUDIT_KEY", "too-short-0123456789"),
            ("VIVIFIED_AUDIT_CHECKPOINT_EVERY", "0"),
            ("VIVIFIED_AUDIT_CHECKPOINT_EVERY", "often"),
            ("VIVIFIED_AUDIT_CHECKPOINT_EVERY", "10000001"),
            ("VIVIFIED_AUDIT_SEAL_INTERVAL", "0s"),
            ("VIVIFIED_AUDIT_SEAL_INTERVAL", "2m"),
            ("VIVIFIED_AUDIT_SEAL_INTERVAL", "soon"),
        ] {
            match load(&[(k, v)]) {
                Err(e @ SettingsError::Invalid { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(k), "{msg} names {k}");
                    assert!(!msg.contains('\n'), "one line: {msg}");
                    assert!(!msg.contains("too-short"), "the key is never echoed: {msg}");
                }
                other => panic!("{k}={v}: expected a refusal, got {other:?}"),
            }
        }
        // The same length rule in production, where the key is also required.
        let err = load(&prod(&[("VIVIFIED_AUDIT_KEY", "short")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("VIVIFIED_AUDIT_KEY"), "{err}");
    }

    #[test]
    fn production_requires_a_strong_separate_audit_key() {
        let refused = |over: &[(&'static str, &'static str)], needle: &str| {
            let mut env = prod(&[]);
            for (k, v) in over {
                env.retain(|(ek, _)| ek != k);
                env.push((k, v));
            }
            let err = load(&env).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
            assert!(
                err.contains("VIVIFIED_AUDIT_KEY"),
                "{err} names the setting"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        };
        refused(&[("VIVIFIED_AUDIT_KEY", "")], "is not set");
        refused(
            &[("VIVIFIED_AUDIT_KEY", "changeme-changeme-changeme-changeme")],
            "known default",
        );
        refused(
            &[("VIVIFIED_AUDIT_KEY", GOOD_JWT)],
            "must differ from JWT_SECRET",
        );
        let mut env = prod(&[]);
        env.retain(|(k, _)| *k != "VIVIFIED_ADMIN_TOKEN" && *k != "VIVIFIED_AUDIT_KEY");
        env.push((
            "VIVIFIED_ADMIN_TOKEN",
            "adm-8f3k2j5h7g9d1s-0123456789abcdef",
        ));
        env.push(("VIVIFIED_AUDIT_KEY", "adm-8f3k2j5h7g9d1s-0123456789abcdef"));
        let err = load(&env).unwrap_err().to_string();
        assert!(
            err.contains("VIVIFIED_AUDIT_KEY must differ from VIVIFIED_ADMIN_TOKEN"),
            "{err}"
        );
        assert!(load(&prod(&[])).is_ok());
    }
}
