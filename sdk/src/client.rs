//! `CoreClient`: one typed method per core endpoint a plugin uses, with a timeout on
//! every request, and `CoreError`, which tells the runner what each answer means.
//!
//! Most plugins never call this directly: [`crate::Runner`] drives it. It is public for
//! plugins that want to manage their registration themselves.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use std::sync::Arc;

use crate::error::BoxError;
use crate::health::HealthReport;
use crate::identity::Shared;
use crate::manifest::{Manifest, Violation};
use crate::secret::Secret;

/// Largest heartbeat `details` the core accepts (bytes of JSON).
pub const MAX_HEARTBEAT_DETAILS: usize = 4096;

/// What went wrong talking to the core. Never contains a token or secret.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No answer: connection refused, reset, DNS failure. The core is probably down.
    #[error("core unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// No answer within the request timeout.
    #[error("core did not answer within {0:?}")]
    Timeout(Duration),
    /// 401: the credential was refused; `reason` is the core's reason code
    /// (`invalid_token`, `expired_token`, `revoked_token`, `unknown_plugin`,
    /// `missing_credentials`, `registration_secret_required`).
    #[error("unauthorized ({reason})")]
    Unauthorized {
        /// The core's reason code.
        reason: String,
    },
    /// 403 `plugin_disabled`: an operator disabled the plugin.
    #[error("plugin disabled by an operator")]
    PluginDisabled,
    /// 403 `forbidden`: a valid credential without access; `reason` is the core's code.
    #[error("forbidden ({reason})")]
    Forbidden {
        /// The core's reason code.
        reason: String,
    },
    /// 404.
    #[error("not found")]
    NotFound,
    /// 409 `already_registered`.
    #[error("the plugin id is already registered")]
    AlreadyRegistered,
    /// 400 or 422 `invalid_manifest`, with every violation.
    #[error("invalid manifest ({} violations)", .violations.len())]
    InvalidManifest {
        /// The core's violations.
        violations: Vec<Violation>,
    },
    /// Another 4xx: the request was wrong (a bug in the SDK or the plugin).
    #[error("request refused: {status} {code}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The core's error code.
        code: String,
    },
    /// 5xx or 429: the core or its database is in trouble; retry later.
    #[error("core unavailable ({status})")]
    Unavailable {
        /// HTTP status.
        status: u16,
    },
    /// A 2xx answer whose body is not what the API documents.
    #[error("unexpected answer from the core: {0}")]
    Protocol(String),
}

impl CoreError {
    /// Whether retrying the same request later can succeed without anything changing
    /// on this side (no answer, a timeout, 5xx/429).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Timeout(_) | Self::Unavailable { .. }
        )
    }

    /// The HTTP status, when the core answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unreachable(_) | Self::Timeout(_) | Self::Protocol(_) => None,
            Self::Unauthorized { .. } => Some(401),
            Self::PluginDisabled | Self::Forbidden { .. } => Some(403),
            Self::NotFound => Some(404),
            Self::AlreadyRegistered => Some(409),
            Self::InvalidManifest { .. } => None,
            Self::Rejected { status, .. } | Self::Unavailable { status } => Some(*status),
        }
    }
}

/// A registration or refresh answer.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The plugin id.
    pub plugin_id: String,
    /// The instance the token is for (`None` from a core without instances).
    pub instance_id: Option<String>,
    /// The new token (the previous one no longer works).
    pub token: Secret,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
}

#[derive(Deserialize)]
struct RegistrationBody {
    plugin_id: String,
    #[serde(default)]
    instance_id: Option<String>,
    token: Secret,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(default)]
    heartbeat_interval_ms: Option<u64>,
    #[serde(default)]
    heartbeat_interval_secs: Option<u64>,
}

/// The core's answer about a token (`POST /tokens/introspect`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Introspection {
    /// Whether the token is valid, current, unexpired, and its plugin registered and
    /// enabled. When `false`, the other members are empty.
    pub active: bool,
    /// The plugin the token belongs to.
    #[serde(default)]
    pub plugin_id: Option<String>,
    /// That plugin's declared traits (`handles_pii`, …), as the core has them.
    #[serde(default)]
    pub traits: Vec<String>,
    /// That plugin's data classification.
    #[serde(default)]
    pub data_classification: Vec<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default)]
    pub exp: Option<i64>,
}

impl Introspection {
    /// An inactive answer.
    pub fn inactive() -> Self {
        Self {
            active: false,
            plugin_id: None,
            traits: Vec::new(),
            data_classification: Vec::new(),
            exp: None,
        }
    }

    /// Whether the token is active and its plugin declares `t`.
    pub fn has_trait(&self, t: crate::PluginTrait) -> bool {
        self.active && self.traits.iter().any(|x| x == t.as_str())
    }
}

/// The core's error body: `{"error", "detail", "reason"?, "rule"?, "violations"?}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    /// The machine-readable code (`plugin_disabled`, `policy_denied`, …).
    #[serde(default)]
    pub(crate) error: String,
    /// A sentence for humans (never echoes a value the client sent).
    #[serde(default)]
    pub(crate) detail: Option<String>,
    /// The reason code of a 401/403.
    #[serde(default)]
    pub(crate) reason: Option<String>,
    /// The policy rule of a 403 `policy_denied`.
    #[serde(default)]
    pub(crate) rule: Option<String>,
    #[serde(default)]
    violations: Vec<Violation>,
}

impl ErrorBody {
    /// The code, or `unknown` when the body had none.
    pub(crate) fn code(&self) -> String {
        if self.error.is_empty() {
            "unknown".into()
        } else {
            self.error.clone()
        }
    }
}

/// Talks to one core. Cheap to clone (one connection pool).
///
/// A client may speak *as a plugin* ([`CoreClient::publish`], [`CoreClient::pull`]):
/// the runner's client ([`crate::PluginContext::client`],
/// [`crate::RunnerHandle::client`]) always holds the runner's current token, and
/// [`CoreClient::as_plugin`] makes one with a fixed token.
#[derive(Clone, Debug)]
pub struct CoreClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    identity: Option<Arc<Shared>>,
}

/// The core URL is not usable.
#[derive(Debug, thiserror::Error)]
#[error("CORE_URL: {0}")]
pub struct InvalidCoreUrl(pub String);

/// Installs rustls' `ring` as the process's default crypto provider, unless one is
/// installed already (that one stays). The SDK's HTTP client (reqwest, built without a
/// provider of its own) needs one for `https://`; [`CoreClient`] calls this itself, so
/// only a program that builds its own reqwest client first needs to.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of the PEM file `path` (`VIVIFIED_CA_CERT`).
fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, crate::config::ConfigError> {
    let fail = |reason: String| crate::config::ConfigError {
        name: "VIVIFIED_CA_CERT",
        reason,
    };
    let bytes =
        std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&bytes)
        .map_err(|_| fail(format!("{} is not valid PEM", path.display())))?;
    if certs.is_empty() {
        return Err(fail(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

impl CoreClient {
    /// A client for the core at `core_url` (`http://host:port` or `https://host:port`,
    /// optionally with a path prefix); every request gives up after `timeout`. An
    /// `https://` core's certificate must chain to one of the system's roots; see
    /// [`CoreClient::from_config`] for a private CA.
    ///
    /// # Errors
    /// [`InvalidCoreUrl`] when `core_url` is not an absolute `http(s)` URL or the HTTP
    /// client cannot be built.
    pub fn new(core_url: &str, timeout: Duration) -> Result<Self, InvalidCoreUrl> {
        Self::build(core_url, timeout, Vec::new())
    }

    /// A client for `config.core_url` with `config.request_timeout`, trusting
    /// `config.ca_cert` (`VIVIFIED_CA_CERT`) besides the system's roots.
    ///
    /// # Errors
    /// [`crate::RunError::Config`] naming `VIVIFIED_CA_CERT` when the file cannot be
    /// read or holds no certificate; [`crate::RunError::CoreUrl`] as [`CoreClient::new`].
    pub fn from_config(config: &crate::Config) -> Result<Self, crate::RunError> {
        let roots = match &config.ca_cert {
            None => Vec::new(),
            Some(path) => load_ca(path)?,
        };
        Ok(Self::build(
            &config.core_url,
            config.request_timeout,
            roots,
        )?)
    }

    fn build(
        core_url: &str,
        timeout: Duration,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, InvalidCoreUrl> {
        let url = reqwest::Url::parse(core_url.trim())
            .map_err(|e| InvalidCoreUrl(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(InvalidCoreUrl(
                "expected http://HOST:PORT or https://HOST:PORT".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidCoreUrl(
                "credentials in the URL are not supported".into(),
            ));
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("vivified-plugin-sdk/", env!("CARGO_PKG_VERSION")))
            // The system's roots (the platform verifier) plus the configured CA.
            .tls_certs_merge(roots)
            .build()
            .map_err(|e| InvalidCoreUrl(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            timeout,
            identity: None,
        })
    }

    /// This client (same connection pool), speaking as `plugin_id` with `token` for
    /// [`CoreClient::publish`] and [`CoreClient::pull`] — for programs that manage
    /// their registration themselves. A runner's client follows the runner's token
    /// instead.
    #[must_use]
    pub fn as_plugin(&self, plugin_id: &str, token: Secret) -> Self {
        self.bound(Arc::new(Shared::new(plugin_id.to_owned(), Some(token))))
    }

    /// The plugin this client speaks as, if any.
    pub fn plugin_id(&self) -> Option<&str> {
        self.identity.as_deref().map(|s| s.plugin_id.as_str())
    }

    /// This client speaking with the token `shared` holds (the runner's).
    pub(crate) fn bound(&self, shared: Arc<Shared>) -> Self {
        Self {
            identity: Some(shared),
            ..self.clone()
        }
    }

    pub(crate) fn identity(&self) -> Option<&Arc<Shared>> {
        self.identity.as_ref()
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /plugins/register` with `manifest`; `bearer` is the plugin's current token
    /// (re-registration) or the registration secret (a production core).
    ///
    /// # Errors
    /// [`CoreError`].
    pub async fn register(
        &self,
        manifest: &Manifest,
        bearer: Option<&Secret>,
    ) -> Result<Registration, CoreError> {
        self.register_instance(manifest, None, bearer).await
    }

    /// [`CoreClient::register`] for instance `instance` of the plugin
    /// (`POST /plugins/register?instance=…`; `None`: the token's own instance, or
    /// `default`).
    ///
    /// # Errors
    /// [`CoreError`].
    pub async fn register_instance(
        &self,
        manifest: &Manifest,
        instance: Option<&str>,
        bearer: Option<&Secret>,
    ) -> Result<Registration, CoreError> {
        let mut url = reqwest::Url::parse(&format!("{}/plugins/register", self.base))
            .map_err(|e| CoreError::Protocol(format!("registration URL: {e}")))?;
        if let Some(instance) = instance {
            url.query_pairs_mut().append_pair("instance", instance);
        }
        let mut req = self.http.post(url).json(manifest);
        if let Some(b) = bearer {
            req = req.bearer_auth(b.expose());
        }
        let body = self.send(req).await?;
        parse_registration(&body)
    }

    /// `POST /plugins/{id}/heartbeat` with `report`. Details larger than the core
    /// accepts are dropped (the health still goes).
    ///
    /// # Errors
    /// [`CoreError`].
    pub async fn heartbeat(
        &self,
        plugin_id: &str,
        token: &Secret,
        report: &HealthReport,
    ) -> Result<(), CoreError> {
        let mut body = serde_json::json!({ "health": report.health });
        if !report.details.is_empty() {
            let size = serde_json::to_vec(&report.details).map_or(usize::MAX, |v| v.len());
            if size <= MAX_HEARTBEAT_DETAILS {
                body["details"] = Value::Object(report.details.clone());
            } else {
                tracing::warn!(
                    plugin_id,
                    size,
                    limit = MAX_HEARTBEAT_DETAILS,
                    "health details too large; sent without them"
                );
            }
        }
        let req = self
            .http
            .post(format!("{}/plugins/{plugin_id}/heartbeat", self.base))
            .bearer_auth(token.expose())
            .json(&body);
        self.send(req).await.map(drop)
    }

    /// `POST /plugins/{id}/token`: a fresh token; the old one stops working.
    ///
    /// # Errors
    /// [`CoreError`].
    pub async fn refresh(
        &self,
        plugin_id: &str,
        token: &Secret,
    ) -> Result<Registration, CoreError> {
        let req = self
            .http
            .post(format!("{}/plugins/{plugin_id}/token", self.base))
            .bearer_auth(token.expose());
        let body = self.send(req).await?;
        parse_registration(&body)
    }

    /// `DELETE /plugins/{id}`: deregisters; the token stops working.
    ///
    /// # Errors
    /// [`CoreError`].
    pub async fn deregister(&self, plugin_id: &str, token: &Secret) -> Result<(), CoreError> {
        let req = self
            .http
            .delete(format!("{}/plugins/{plugin_id}", self.base))
            .bearer_auth(token.expose());
        self.send(req).await.map(drop)
    }

    /// `POST /tokens/introspect`: asks the core about `token`, authenticating with the
    /// caller's own `caller_token`.
    ///
    /// # Errors
    /// [`CoreError`] when the call fails; an invalid `token` is not an error but
    /// `Ok` with `active: false`.
    pub async fn introspect(
        &self,
        caller_token: &Secret,
        token: &str,
    ) -> Result<Introspection, CoreError> {
        let req = self
            .http
            .post(format!("{}/tokens/introspect", self.base))
            .bearer_auth(caller_token.expose())
            .json(&serde_json::json!({ "token": token }));
        let body = self.send(req).await?;
        let answer: Introspection = serde_json::from_slice(&body)
            .map_err(|e| CoreError::Protocol(format!("introspection answer: {e}")))?;
        Ok(if answer.active {
            answer
        } else {
            Introspection::inactive()
        })
    }

    /// Sends `req` and returns the body of a 2xx answer, or the error it means.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, CoreError> {
        self.exchange(req, self.timeout)
            .await
            .map_err(Failure::into_core_error)
    }

    /// Sends `req` and returns the body of a 2xx answer, or what went wrong: no answer
    /// (within `timeout`, reported in the error), or the core's status and error body.
    pub(crate) async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Vec<u8>, Failure> {
        let transport = |e: reqwest::Error| {
            Failure::Transport(if e.is_timeout() {
                CoreError::Timeout(timeout)
            } else {
                // reqwest's message names the URL (no secrets: ids and paths only).
                CoreError::Unreachable(Box::new(e))
            })
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        let body: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        Err(Failure::Answer { status, body })
    }

    /// The HTTP client (shared connection pool).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The timeout of every request but the long poll.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// What a request to the core came back with, before an operation gives it meaning.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No answer: [`CoreError::Unreachable`] or [`CoreError::Timeout`].
    Transport(CoreError),
    /// A non-2xx answer.
    Answer {
        /// HTTP status.
        status: u16,
        /// The core's error body (empty members when it was not one).
        body: ErrorBody,
    },
}

impl Failure {
    /// The meaning for registration, heartbeats, refresh, deregistration, introspection.
    pub(crate) fn into_core_error(self) -> CoreError {
        let (status, err) = match self {
            Self::Transport(e) => return e,
            Self::Answer { status, body } => (status, body),
        };
        match (status, err.error.as_str()) {
            (_, "invalid_manifest") => CoreError::InvalidManifest {
                violations: err.violations,
            },
            (401, _) => CoreError::Unauthorized {
                reason: err.reason.unwrap_or_else(|| "unauthorized".into()),
            },
            (403, "plugin_disabled") => CoreError::PluginDisabled,
            (403, _) => CoreError::Forbidden {
                reason: err.reason.unwrap_or_else(|| "forbidden".into()),
            },
            (404, _) => CoreError::NotFound,
            (409, _) => CoreError::AlreadyRegistered,
            (429 | 500..=599, _) => CoreError::Unavailable { status },
            _ => CoreError::Rejected {
                status,
                code: err.code(),
            },
        }
    }
}

fn parse_registration(body: &[u8]) -> Result<Registration, CoreError> {
    let b: RegistrationBody = serde_json::from_slice(body)
        .map_err(|e| CoreError::Protocol(format!("registration answer: {e}")))?;
    let heartbeat_interval = match (b.heartbeat_interval_ms, b.heartbeat_interval_secs) {
        (Some(ms), _) if ms > 0 => Duration::from_millis(ms),
        (_, Some(s)) if s > 0 => Duration::from_secs(s),
        _ => {
            return Err(CoreError::Protocol(
                "registration answer without a heartbeat interval".into(),
            ));
        }
    };
    Ok(Registration {
        plugin_id: b.plugin_id,
        instance_id: b.instance_id,
        token: b.token,
        expires_at: b.expires_at,
        heartbeat_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_url_is_checked() {
        let t = Duration::from_secs(1);
        assert!(CoreClient::new("http://127.0.0.1:8000", t).is_ok());
        assert_eq!(
            CoreClient::new("http://127.0.0.1:8000/", t)
                .unwrap()
                .base_url(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            CoreClient::new("http://core.internal/vivified/", t)
                .unwrap()
                .base_url(),
            "http://core.internal/vivified"
        );
        for bad in ["", "127.0.0.1:8000", "ftp://x", "http://u:p@host:1"] {
            let e = CoreClient::new(bad, t).unwrap_err().to_string();
            assert!(e.starts_with("CORE_URL: "), "{e}");
            assert!(!e.contains("u:p"), "never echo credentials: {e}");
        }
        assert!(CoreClient::new("https://core.internal:8000", t).is_ok());
    }

    #[test]
    fn a_bad_ca_file_names_the_setting() {
        let dir = std::env::temp_dir().join(format!("vivified-sdk-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("not-a-cert.pem");
        std::fs::write(&text, "hello\n").unwrap();
        for (path, needle) in [
            (dir.join("absent.pem"), "cannot read"),
            (text, "no PEM certificate"),
        ] {
            let config = crate::Config {
                ca_cert: Some(path),
                ..crate::Config::new("https://127.0.0.1:8000")
            };
            let e = CoreClient::from_config(&config).unwrap_err();
            assert!(matches!(e, crate::RunError::Config(_)), "{e}");
            let e = e.to_string();
            assert!(e.starts_with("VIVIFIED_CA_CERT: "), "{e}");
            assert!(e.contains(needle), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn registration_prefers_milliseconds() {
        let r = parse_registration(
            br#"{"status":"registered","plugin_id":"p","token":"t","expires_at":"2030-01-01T00:00:00Z","heartbeat_interval_secs":1,"heartbeat_interval_ms":200}"#,
        )
        .unwrap();
        assert_eq!(r.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(format!("{:?}", r.token), "[redacted]");
        let r = parse_registration(
            br#"{"plugin_id":"p","token":"t","expires_at":"2030-01-01T00:00:00Z","heartbeat_interval_secs":3}"#,
        )
        .unwrap();
        assert_eq!(r.heartbeat_interval, Duration::from_secs(3));
        assert!(matches!(
            parse_registration(br#"{"plugin_id":"p"}"#),
            Err(CoreError::Protocol(_))
        ));
    }
}
