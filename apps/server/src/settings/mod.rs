//! Typed settings, loaded in layers: defaults → optional TOML file → environment.
//!
//! Every setting has one canonical key (the TOML key) and environment names: the
//! `VIVIFIED_*` name always wins over the seed's name (`JWT_SECRET`, `ALLOWED_ORIGINS`,
//! `LOG_LEVEL`, `DATABASE_URL`, `NATS_URL`) when both are set.

mod checks;
mod keys;
mod oidc;
mod parse;

pub use oidc::{OidcSettings, oidc_config};

use keys::KEYS;
use parse::read_file;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vivified_domain::Mode;
use vivified_ports::Secret;

/// Default of `VIVIFIED_AUDIT_CHECKPOINT_EVERY`.
pub const DEFAULT_AUDIT_CHECKPOINT_EVERY: u64 = 1000;
/// Largest `VIVIFIED_AUDIT_CHECKPOINT_EVERY`.
pub const MAX_AUDIT_CHECKPOINT_EVERY: u64 = 10_000_000;
/// Longest `VIVIFIED_AUDIT_SEAL_INTERVAL`: sealing lag is what `/ready` reports, and
/// entries are only readable and verifiable once sealed.
pub const MAX_AUDIT_SEAL_INTERVAL: Duration = Duration::from_secs(60);
/// Registration and enrollment requests a minute per client address in production.
pub const DEFAULT_REGISTRATION_RATE_LIMIT: u32 = 600;

/// Failed authentications a minute per client address, and per credential, in
/// production unless configured.
pub const DEFAULT_AUTH_FAILURE_LIMIT: u32 = 20;

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
    /// Dev mode: a registration without a credential replaces its id's stale
    /// registration (default true in dev mode; refused when set in production).
    pub dev_replace_stale: bool,
    /// Admin token; generated in dev mode when missing.
    pub admin_token: Option<Secret>,
    /// The shared registration secret. In production it registers new ids only with
    /// `registration_secret_allowed`; new plugins otherwise enroll with one-time tokens.
    pub registration_secret: Option<Secret>,
    /// Production keeps accepting the shared registration secret
    /// (`VIVIFIED_REGISTRATION_SECRET_ALLOWED`, default false).
    pub registration_secret_allowed: bool,
    /// Registration and enrollment requests a minute per client address
    /// (`VIVIFIED_REGISTRATION_RATE_LIMIT`; default 600 in production, 0 = off in dev).
    pub registration_rate_limit: u32,
    /// Failed authentications (401 answers) a minute per client address, and per
    /// credential, before further requests from it, or with it, are answered 429
    /// `too_many_requests` unread (`VIVIFIED_AUTH_FAILURE_LIMIT`; default 20 in
    /// production, 0 = off in dev).
    pub auth_failure_limit: u32,
    /// Operators with the operator role may raise themselves to admin for at most 4 h
    /// (`VIVIFIED_BREAK_GLASS`, default false).
    pub break_glass: bool,
    /// Operators' single sign-on (`VIVIFIED_OIDC_*`); `None`: off.
    pub oidc: Option<OidcSettings>,
    /// Most instances one plugin may have (`VIVIFIED_MAX_INSTANCES`, 1 to 10000,
    /// default 64).
    pub max_instances: usize,
    /// JWT signing secret; generated in dev mode when missing.
    pub jwt_secret: Option<Secret>,
    /// Older JWT secrets whose tokens still verify.
    pub jwt_previous_secrets: Vec<Secret>,
    /// Ed25519 private key files (PKCS#8 PEM), `VIVIFIED_SIGNING_KEYS`: the first signs
    /// plugin tokens (EdDSA), all verify and are published at
    /// `/.well-known/jwks.json`. Without any, tokens are signed HS256 (`jwt_secret`).
    pub signing_keys: Vec<PathBuf>,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// How long an expired token whose `jti` is current may re-register.
    pub reregister_grace: Duration,
    /// Heartbeat interval told to plugins.
    pub heartbeat_interval: Duration,
    /// Silence after which a plugin is stale (default 3 × interval).
    pub heartbeat_ttl: Duration,
    /// How long a durable store may hold heartbeats that change nothing but times
    /// before writing them in one batch (`VIVIFIED_HEARTBEAT_FLUSH`; default 1 s or a
    /// quarter of the TTL, whichever is shorter; zero: every beat written at once).
    pub heartbeat_flush: Duration,
    /// How long a durable store's write waits for others to commit with it in one
    /// transaction (`VIVIFIED_GROUP_COMMIT_WAIT`; default 2 ms; zero: each alone).
    pub group_commit_wait: Duration,
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
    /// Largest total size of a request's header fields (name, value and 4 bytes of
    /// framing each, as in HTTP/1), on either protocol.
    pub max_header_bytes: usize,
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
    /// Older audit keys, newest first: the chain's head may have been sealed with one
    /// (the next seal rotates to `audit_key`), and verification walks across them.
    pub audit_previous_keys: Vec<Secret>,
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
            replace_stale: self.dev_replace_stale,
            max_instances: self.max_instances,
            break_glass: self.break_glass,
            oidc_role_map: self
                .oidc
                .as_ref()
                .map(|o| o.role_map.clone())
                .unwrap_or_else(|| vivified_domain::RegistryConfig::default().oidc_role_map),
            ..vivified_domain::RegistryConfig::default()
        }
    }

    /// The API listener would serve plain HTTP beyond this host with no proxy said to
    /// terminate TLS in front of it (refused in production, a warning in dev mode).
    pub fn plain_http_exposed(&self) -> bool {
        self.tls.is_none() && !self.bind.ip().is_loopback() && !self.tls_terminated_by_proxy
    }
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
            ("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true"),
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
        assert_eq!(s.max_header_bytes, 16384);
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
    fn previous_audit_keys_are_a_list_of_long_keys() {
        let old = "aud-old-4Tb8Nc2Vx6Lm0Qw3Er7Ty1Ui5Op9As";
        let older = "aud-older-Zx1Cv2Bn3Mm4Kk5Jj6Hh7Gg8Ff";
        let s = load(&[
            ("VIVIFIED_AUDIT_KEY", GOOD_AUDIT_KEY),
            (
                "VIVIFIED_AUDIT_PREVIOUS_KEYS",
                &format!(" {old} , {older},"),
            ),
        ])
        .unwrap();
        let keys: Vec<&str> = s.audit_previous_keys.iter().map(Secret::expose).collect();
        assert_eq!(keys, [old, older]);
        assert!(!format!("{s:?}").contains(old), "a key never prints");
        for (pairs, why) in [
            (
                vec![
                    ("VIVIFIED_AUDIT_KEY", GOOD_AUDIT_KEY),
                    ("VIVIFIED_AUDIT_PREVIOUS_KEYS", "short"),
                ],
                "at least 32 bytes",
            ),
            (
                vec![("VIVIFIED_AUDIT_PREVIOUS_KEYS", old)],
                "needs VIVIFIED_AUDIT_KEY",
            ),
        ] {
            let err = load(&pairs).unwrap_err().to_string();
            assert!(
                err.contains("VIVIFIED_AUDIT_PREVIOUS_KEYS") && err.contains(why),
                "{err}"
            );
        }
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
            (
                &[("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "false")],
                "VIVIFIED_REGISTRATION_SECRET_ALLOWED is not true",
            ),
            (
                &[("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "maybe")],
                "VIVIFIED_REGISTRATION_SECRET_ALLOWED",
            ),
            (
                &[("VIVIFIED_REGISTRATION_RATE_LIMIT", "lots")],
                "VIVIFIED_REGISTRATION_RATE_LIMIT",
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
    fn production_enrolls_without_a_shared_secret_and_signs_with_key_files() {
        let without = |names: &[&str]| -> Vec<(&'static str, &'static str)> {
            prod(&[])
                .into_iter()
                .filter(|(k, _)| !names.contains(k))
                .collect()
        };
        // No shared secret at all: plugins enroll.
        let s = load(&without(&[
            "VIVIFIED_REGISTRATION_SECRET",
            "VIVIFIED_REGISTRATION_SECRET_ALLOWED",
        ]))
        .unwrap();
        assert!(s.registration_secret.is_none() && !s.registration_secret_allowed);
        // Allowed but missing.
        let err = load(&without(&["VIVIFIED_REGISTRATION_SECRET"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("VIVIFIED_REGISTRATION_SECRET is not set"),
            "{err}"
        );
        // Ed25519 key files instead of JWT_SECRET; neither is refused.
        let mut keys = without(&["JWT_SECRET"]);
        keys.push(("VIVIFIED_SIGNING_KEYS", "/keys/new.pem, /keys/old.pem"));
        let s = load(&keys).unwrap();
        assert_eq!(
            s.signing_keys,
            [
                PathBuf::from("/keys/new.pem"),
                PathBuf::from("/keys/old.pem")
            ]
        );
        let err = load(&without(&["JWT_SECRET"])).unwrap_err().to_string();
        assert!(err.contains("VIVIFIED_SIGNING_KEYS"), "{err}");
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
            ("VIVIFIED_MAX_HEADER_BYTES", "1023"),
            ("VIVIFIED_MAX_HEADER_BYTES", "16k"),
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
    fn heartbeat_flush_and_group_commit_have_safe_defaults_and_limits() {
        let s = load(&[]).unwrap();
        assert_eq!(
            s.heartbeat_flush,
            Duration::from_secs(1),
            "1 s under a 30 s TTL"
        );
        assert_eq!(s.group_commit_wait, Duration::from_millis(2));
        let s = load(&[("VIVIFIED_HEARTBEAT_INTERVAL", "200ms")]).unwrap();
        assert_eq!(
            s.heartbeat_flush,
            Duration::from_millis(150),
            "a quarter of 600 ms"
        );
        let s = load(&[
            ("VIVIFIED_HEARTBEAT_FLUSH", "0"),
            ("VIVIFIED_GROUP_COMMIT_WAIT", "0"),
        ])
        .unwrap();
        assert!(s.heartbeat_flush.is_zero() && s.group_commit_wait.is_zero());
        let s = load(&[("VIVIFIED_HEARTBEAT_FLUSH", "7s")]).unwrap();
        assert_eq!(s.heartbeat_flush, Duration::from_secs(7));
        for (pairs, name) in [
            (
                &[("VIVIFIED_HEARTBEAT_FLUSH", "7500ms")][..],
                "VIVIFIED_HEARTBEAT_FLUSH",
            ),
            (
                &[("VIVIFIED_HEARTBEAT_FLUSH", "soon")][..],
                "VIVIFIED_HEARTBEAT_FLUSH",
            ),
            (
                &[("VIVIFIED_GROUP_COMMIT_WAIT", "1s")][..],
                "VIVIFIED_GROUP_COMMIT_WAIT",
            ),
        ] {
            match load(pairs) {
                Err(SettingsError::Invalid { name: n, reason }) => {
                    assert_eq!(n, name, "{pairs:?}: {reason}");
                }
                other => panic!("{pairs:?}: expected a refusal, got {other:?}"),
            }
        }
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
