//! `Config`: where the core is, how the plugin authenticates, where it keeps its token,
//! and its timeouts and backoff — from the environment or set in code.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::secret::Secret;

/// The core's default address (a core started with `cargo run -p vivified-server`).
pub const DEFAULT_CORE_URL: &str = "http://127.0.0.1:8000";

/// How a plugin talks to the core.
#[derive(Clone, Debug)]
pub struct Config {
    /// The core's base URL (`CORE_URL`, default `http://127.0.0.1:8000`; `https://` for
    /// a core that serves TLS).
    pub core_url: String,
    /// An extra CA certificate (PEM file) trusted for an `https://` core, besides the
    /// system's roots (`VIVIFIED_CA_CERT`): for a core whose certificate comes from a
    /// private CA.
    pub ca_cert: Option<PathBuf>,
    /// Sent as the bearer to register a new id with a production core
    /// (`VIVIFIED_REGISTRATION_SECRET`).
    pub registration_secret: Option<Secret>,
    /// A one-time enrollment token an operator minted for this plugin's id
    /// (`VIVIFIED_ENROLLMENT_TOKEN`, from `vivified enroll`): the first registration
    /// presents it; afterwards the plugin keeps its token (`PLUGIN_TOKEN_FILE`) and never
    /// needs it again.
    pub enrollment_token: Option<Secret>,
    /// Where to keep the token across restarts (`PLUGIN_TOKEN_FILE`; written with mode
    /// 0600). Without it a restarted plugin cannot re-register its id on a core that
    /// still holds it (409) until an operator frees the id.
    pub token_file: Option<PathBuf>,
    /// This replica's instance id (`PLUGIN_INSTANCE_ID`: 1 to 64 characters of
    /// `[A-Za-z0-9._-]`, starting with a letter or digit, e.g. the pod name). Without
    /// it, a plugin with a token file generates one on its first start and keeps it
    /// there; a plugin without one registers the instance `default`.
    pub instance_id: Option<String>,
    /// Bound on every request to the core (`PLUGIN_REQUEST_TIMEOUT`, default 10 s).
    pub request_timeout: Duration,
    /// Retry delays (`PLUGIN_BACKOFF_INITIAL`, default 250 ms; `PLUGIN_BACKOFF_MAX`,
    /// default 30 s).
    pub backoff: Backoff,
    /// Deregister (`DELETE /plugins/{id}`) when stopping (`PLUGIN_DEREGISTER_ON_SHUTDOWN`,
    /// default false: the registration and token survive a restart).
    pub deregister_on_shutdown: bool,
    /// How long introspection answers are cached (`PLUGIN_INTROSPECTION_CACHE`, default
    /// 10 s, at most 30 s; never past the token's expiry).
    pub introspection_cache: Duration,
}

/// The longest an introspection answer may be cached.
pub const MAX_INTROSPECTION_CACHE: Duration = Duration::from_secs(30);

impl Default for Config {
    fn default() -> Self {
        Self {
            core_url: DEFAULT_CORE_URL.to_owned(),
            ca_cert: None,
            registration_secret: None,
            enrollment_token: None,
            token_file: None,
            instance_id: None,
            request_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            deregister_on_shutdown: false,
            introspection_cache: Duration::from_secs(10),
        }
    }
}

/// A setting from the environment is wrong; names the variable, never a secret value.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// Why.
    pub reason: String,
}

impl Config {
    /// A configuration for the core at `core_url`, every other setting at its default.
    pub fn new(core_url: impl Into<String>) -> Self {
        Self {
            core_url: core_url.into(),
            ..Self::default()
        }
    }

    /// Reads the process environment (see each field for its variable). Empty
    /// variables count as unset.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(|k| std::env::var(k).ok())
    }

    /// [`Config::from_env`] over any lookup (for tests).
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_env_with(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => humantime::parse_duration(&v)
                    .map_err(|e| ConfigError {
                        name,
                        reason: format!("not a duration like `500ms` or `30s`: {e}"),
                    })
                    .and_then(|d| {
                        if d.is_zero() {
                            Err(ConfigError {
                                name,
                                reason: "must be greater than zero".into(),
                            })
                        } else {
                            Ok(d)
                        }
                    }),
            }
        };
        let d = Self::default();
        let deregister_on_shutdown = match get("PLUGIN_DEREGISTER_ON_SHUTDOWN") {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError {
                        name: "PLUGIN_DEREGISTER_ON_SHUTDOWN",
                        reason: "expected true or false".into(),
                    });
                }
            },
        };
        let backoff = Backoff {
            initial: duration("PLUGIN_BACKOFF_INITIAL", d.backoff.initial)?,
            max: duration("PLUGIN_BACKOFF_MAX", d.backoff.max)?,
        };
        if backoff.initial > backoff.max {
            return Err(ConfigError {
                name: "PLUGIN_BACKOFF_INITIAL",
                reason: "must not exceed PLUGIN_BACKOFF_MAX".into(),
            });
        }
        let instance_id = get("PLUGIN_INSTANCE_ID");
        if instance_id.as_deref().is_some_and(|i| !is_instance_id(i)) {
            return Err(ConfigError {
                name: "PLUGIN_INSTANCE_ID",
                reason: "must be 1 to 64 characters of letters, digits, '.', '_' and '-', \
                         starting with a letter or digit"
                    .into(),
            });
        }
        let introspection_cache = duration("PLUGIN_INTROSPECTION_CACHE", d.introspection_cache)?;
        if introspection_cache > MAX_INTROSPECTION_CACHE {
            return Err(ConfigError {
                name: "PLUGIN_INTROSPECTION_CACHE",
                reason: "must be at most 30s".into(),
            });
        }
        Ok(Self {
            core_url: get("CORE_URL").unwrap_or(d.core_url),
            ca_cert: get("VIVIFIED_CA_CERT").map(PathBuf::from),
            registration_secret: get("VIVIFIED_REGISTRATION_SECRET").map(Secret::new),
            enrollment_token: get("VIVIFIED_ENROLLMENT_TOKEN").map(Secret::new),
            token_file: get("PLUGIN_TOKEN_FILE").map(PathBuf::from),
            instance_id,
            request_timeout: duration("PLUGIN_REQUEST_TIMEOUT", d.request_timeout)?,
            backoff,
            deregister_on_shutdown,
            introspection_cache,
        })
    }
}

/// Whether `id` is an instance id the core accepts.
pub(crate) fn is_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_env_with(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load(&[]).unwrap();
        assert_eq!(c.core_url, DEFAULT_CORE_URL);
        assert!(c.registration_secret.is_none() && c.token_file.is_none());
        assert!(c.ca_cert.is_none());
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert!(!c.deregister_on_shutdown);
        let c = load(&[
            ("CORE_URL", "http://10.0.0.2:9000"),
            ("VIVIFIED_CA_CERT", "/etc/vivified/ca.pem"),
            ("VIVIFIED_REGISTRATION_SECRET", "reg-secret-value"),
            ("PLUGIN_TOKEN_FILE", "/var/lib/p/token.json"),
            ("PLUGIN_REQUEST_TIMEOUT", "2s"),
            ("PLUGIN_BACKOFF_INITIAL", "50ms"),
            ("PLUGIN_BACKOFF_MAX", "1s"),
            ("PLUGIN_DEREGISTER_ON_SHUTDOWN", "yes"),
            ("PLUGIN_INTROSPECTION_CACHE", "30s"),
            ("PLUGIN_INSTANCE_ID", "pod-7f9c.x_1"),
        ])
        .unwrap();
        assert_eq!(c.instance_id.as_deref(), Some("pod-7f9c.x_1"));
        assert_eq!(c.core_url, "http://10.0.0.2:9000");
        assert_eq!(c.ca_cert, Some(PathBuf::from("/etc/vivified/ca.pem")));
        assert_eq!(c.registration_secret.unwrap().expose(), "reg-secret-value");
        assert_eq!(
            c.token_file.unwrap(),
            PathBuf::from("/var/lib/p/token.json")
        );
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.backoff.initial, Duration::from_millis(50));
        assert_eq!(c.backoff.max, Duration::from_secs(1));
        assert!(c.deregister_on_shutdown);
        // Empty means unset.
        assert_eq!(
            load(&[("CORE_URL", " ")]).unwrap().core_url,
            DEFAULT_CORE_URL
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("PLUGIN_REQUEST_TIMEOUT", "soon"),
            ("PLUGIN_REQUEST_TIMEOUT", "0s"),
            ("PLUGIN_BACKOFF_MAX", "-1"),
            ("PLUGIN_DEREGISTER_ON_SHUTDOWN", "maybe"),
            ("PLUGIN_INTROSPECTION_CACHE", "5m"),
            ("PLUGIN_INSTANCE_ID", "-pod"),
            ("PLUGIN_INSTANCE_ID", "a/b"),
        ] {
            let e = load(&[(k, v)]).unwrap_err();
            assert_eq!(e.name, k);
            assert!(e.to_string().starts_with(k));
        }
        let e = load(&[
            ("PLUGIN_BACKOFF_INITIAL", "5s"),
            ("PLUGIN_BACKOFF_MAX", "1s"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "PLUGIN_BACKOFF_INITIAL");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = load(&[("VIVIFIED_REGISTRATION_SECRET", "reg-secret-value")]).unwrap();
        assert!(!format!("{c:?}").contains("reg-secret-value"));
    }
}
