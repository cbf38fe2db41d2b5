//! A small HTTP client of the core's operator API (`/plugins…` and `/audit…` with the
//! admin token), and the URL handling the `plugins`, `audit` and `healthcheck` commands
//! share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use vivified_ports::PluginId;

/// Largest page the core serves (`GET /plugins?limit=`).
const PAGE: u32 = 1000;

/// Why a request to the core failed. One line each; never the admin token, never a
/// URL's credentials.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL given cannot be used.
    #[error("{what} `{url}`: {reason}")]
    BadUrl {
        /// Which option or setting.
        what: &'static str,
        /// The URL, credentials removed.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// `VIVIFIED_ADMIN_TOKEN` is missing.
    #[error(
        "neither VIVIFIED_OPERATOR_TOKEN nor VIVIFIED_ADMIN_TOKEN is set: the commands that talk to a core need an operator token (or the bootstrap admin token)"
    )]
    NoAdminToken,
    /// The argument is not a plugin id.
    #[error("`{0}` is not a plugin id: 1 to 63 characters of a-z, 0-9 and '-'")]
    BadPluginId(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The extra CA file (`--ca-cert`, `VIVIFIED_CA_CERT`) cannot be used.
    #[error("--ca-cert (VIVIFIED_CA_CERT) {}: {reason}", path.display())]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No answer (refused, timed out, reset, not HTTP).
    #[error("cannot reach the core at {url}: {reason}")]
    Unreachable {
        /// Where, credentials removed.
        url: String,
        /// The transport's reason, causes joined on one line.
        reason: String,
    },
    /// The core answered with one of its errors.
    #[error("the core answered {status} {code}{}: {detail}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Core {
        /// HTTP status.
        status: u16,
        /// The API's error code (`not_found`, `unauthorized`, …).
        code: String,
        /// The 401/403 reason code, when there is one.
        reason: Option<String>,
        /// The API's sentence.
        detail: String,
    },
    /// An answer that is not the API's (a proxy's error page, a wrong URL).
    #[error("unexpected answer from {url}: {what}")]
    Unexpected {
        /// Where, credentials removed.
        url: String,
        /// What was wrong with it.
        what: String,
    },
}

impl ClientError {
    /// Whether the command never got as far as asking the core (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::BadUrl { .. }
                | Self::NoAdminToken
                | Self::BadPluginId(_)
                | Self::Setup(_)
                | Self::CaCert { .. }
        )
    }
}

/// Parses an `http://` or `https://` URL (any other scheme is refused here with a clear
/// reason rather than by the transport).
pub fn parse_http_url(what: &'static str, raw: &str) -> Result<Url, ClientError> {
    let bad = |reason| ClientError::BadUrl {
        what,
        url: raw.to_owned(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|_| bad("not a URL like http://127.0.0.1:8000"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::BadUrl {
            what,
            url: redact(&url),
            reason: "only http:// and https:// URLs are supported",
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    Ok(url)
}

/// `url` without user name, password, query or fragment, for messages.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// An error and its causes on one line (`a: b: c`), repeats dropped.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// An HTTP client builder for the core: https through rustls with ring, trusting the
/// system's roots and `ca_cert` (a PEM file), no redirects, every request bounded by
/// `timeout`.
pub fn http_builder(
    timeout: Duration,
    ca_cert: Option<&Path>,
) -> Result<reqwest::ClientBuilder, ClientError> {
    // reqwest is built without a crypto provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_cert {
        let fail = |reason: String| ClientError::CaCert {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&bytes)
            .map_err(|_| fail("is not valid PEM".into()))?;
        if certs.is_empty() {
            return Err(fail(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
}

/// The error body every API error has.
#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    error: String,
    detail: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The operator's view of a core: its base URL and the admin token.
pub struct CoreClient {
    http: reqwest::Client,
    base: Url,
    admin_token: String,
}

impl CoreClient {
    /// A client of the core at `core_url` with `admin_token`, every request bounded by
    /// `timeout`; an `https://` core's certificate must chain to the system's roots or
    /// to `ca_cert` (a PEM file: `--ca-cert`, `VIVIFIED_CA_CERT`).
    pub fn with_ca_cert(
        core_url: &str,
        admin_token: Option<String>,
        timeout: Duration,
        ca_cert: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let base = parse_http_url("--core-url", core_url)?;
        let admin_token = admin_token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or(ClientError::NoAdminToken)?;
        let http = http_builder(timeout, ca_cert)?
            .build()
            .map_err(|e| ClientError::Setup(one_line(&e)))?;
        Ok(Self {
            http,
            base,
            admin_token,
        })
    }

    /// `base` + `/plugins` + `segments`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        self.url_at("plugins", segments)
    }

    /// `base` + `/root` + `segments`, each segment percent-encoded.
    fn url_at(&self, root: &str, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(root).extend(segments);
        }
        url
    }

    /// `GET base/root/segments?query` with the admin token: the JSON object answered.
    pub async fn get_object(
        &self,
        root: &str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let mut url = self.url_at(root, segments);
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        let shown = redact(&url);
        match self.call(Method::GET, url, None).await? {
            (_, Some(v)) if v.is_object() => Ok(v),
            (status, _) => Err(ClientError::Unexpected {
                url: shown,
                what: format!("{status} without a JSON object"),
            }),
        }
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<(StatusCode, Option<Value>), ClientError> {
        let shown = redact(&url);
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: shown.clone(),
            reason: one_line(&e.without_url()),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable {
            url: shown.clone(),
            reason: one_line(&e.without_url()),
        })?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok((status, None));
            }
            return serde_json::from_slice(&bytes)
                .map(|v| (status, Some(v)))
                .map_err(|e| ClientError::Unexpected {
                    url: shown,
                    what: format!("{status} with a body that is not JSON ({e})"),
                });
        }
        match serde_json::from_slice::<ApiErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Core {
                status: status.as_u16(),
                code: body.error,
                reason: body.reason,
                detail: body.detail,
            }),
            Err(_) => Err(ClientError::Unexpected {
                url: shown,
                what: format!("{status} without the API's error body"),
            }),
        }
    }

    async fn record(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let shown = redact(&url);
        match self.call(method, url, body).await? {
            (_, Some(v)) if v.is_object() => Ok(v),
            (status, _) => Err(ClientError::Unexpected {
                url: shown,
                what: format!("{status} without a plugin record"),
            }),
        }
    }

    /// Every plugin record, following `next_after` page by page.
    pub async fn list(&self) -> Result<Vec<Value>, ClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = self.url(&[]);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", &PAGE.to_string());
                if let Some(a) = &after {
                    q.append_pair("after", a);
                }
            }
            let shown = redact(&url);
            let page = match self.call(Method::GET, url, None).await? {
                (_, Some(v)) => v,
                (status, None) => {
                    return Err(ClientError::Unexpected {
                        url: shown,
                        what: format!("{status} with an empty body"),
                    });
                }
            };
            let Some(plugins) = page.get("plugins").and_then(Value::as_array) else {
                return Err(ClientError::Unexpected {
                    url: shown,
                    what: "no `plugins` list".into(),
                });
            };
            all.extend(plugins.iter().cloned());
            match page.get("next_after").and_then(Value::as_str) {
                // A core that hands back the cursor it was given would loop forever.
                Some(next) if after.as_deref() != Some(next) => after = Some(next.to_owned()),
                Some(_) => {
                    return Err(ClientError::Unexpected {
                        url: shown,
                        what: "`next_after` does not advance".into(),
                    });
                }
                None => return Ok(all),
            }
        }
    }

    /// One plugin's record.
    pub async fn show(&self, id: &str) -> Result<Value, ClientError> {
        let id = plugin_id(id)?;
        self.record(Method::GET, self.url(&[id.as_str()]), None)
            .await
    }

    /// Disables a plugin (`POST /plugins/{id}/disable` with `{"reason"}`); the record
    /// after the change.
    pub async fn disable(&self, id: &str, reason: &str) -> Result<Value, ClientError> {
        let id = plugin_id(id)?;
        let body = serde_json::json!({ "reason": reason });
        self.record(
            Method::POST,
            self.url(&[id.as_str(), "disable"]),
            Some(body),
        )
        .await
    }

    /// Approves the sensitive traits a plugin declares (`POST /plugins/{id}/approve`);
    /// the record after the change.
    pub async fn approve(&self, id: &str) -> Result<Value, ClientError> {
        let id = plugin_id(id)?;
        self.record(Method::POST, self.url(&[id.as_str(), "approve"]), None)
            .await
    }

    /// Refuses the sensitive traits a plugin waits to have approved (`POST
    /// /plugins/{id}/refuse`); the record after the change.
    pub async fn refuse(&self, id: &str, reason: &str) -> Result<Value, ClientError> {
        let id = plugin_id(id)?;
        let body = serde_json::json!({ "reason": reason });
        self.record(Method::POST, self.url(&[id.as_str(), "refuse"]), Some(body))
            .await
    }

    /// Enables a plugin again (`POST /plugins/{id}/enable`); the record after the
    /// change.
    pub async fn enable(&self, id: &str) -> Result<Value, ClientError> {
        let id = plugin_id(id)?;
        self.record(Method::POST, self.url(&[id.as_str(), "enable"]), None)
            .await
    }

    /// Revokes the tokens issued at or before `at` (`"now"` or RFC 3339) of one plugin
    /// (`POST /plugins/{id}/revoke-before`) or of every plugin
    /// (`POST /tokens/revoke-before`); the core's answer (`before`, `revoked`).
    pub async fn revoke_before(&self, id: Option<&str>, at: &str) -> Result<Value, ClientError> {
        let url = match id {
            Some(id) => {
                let id = plugin_id(id)?;
                self.url(&[id.as_str(), "revoke-before"])
            }
            None => self.url_at("tokens", &["revoke-before"]),
        };
        self.record(Method::POST, url, Some(serde_json::json!({ "at": at })))
            .await
    }

    /// Mints a one-time enrollment token for `id` (`POST /enrollments`); the core's
    /// answer (`enrollment_id`, `plugin_id`, `token`, `expires_at`).
    pub async fn enroll(&self, id: &str, ttl: &str) -> Result<Value, ClientError> {
        let id = plugin_id(id)?;
        let url = self.url_at("enrollments", &[]);
        let body = serde_json::json!({ "plugin_id": id.as_str(), "ttl": ttl });
        self.record(Method::POST, url, Some(body)).await
    }

    /// Cancels an unused enrollment (`DELETE /enrollments/{id}`): the enrollment as it
    /// was.
    pub async fn cancel_enrollment(&self, id: &str) -> Result<Value, ClientError> {
        let url = self.url_at("enrollments", &[id]);
        self.record(Method::DELETE, url, None).await
    }

    /// `method base/root/segments` with `body`: the JSON answered (`None` for 204).
    pub async fn send(
        &self,
        method: Method,
        root: &str,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<Option<Value>, ClientError> {
        let url = self.url_at(root, segments);
        self.call(method, url, body).await.map(|(_, v)| v)
    }

    /// Deregisters a plugin (`DELETE /plugins/{id}`, 204).
    pub async fn deregister(&self, id: &str) -> Result<(), ClientError> {
        let id = plugin_id(id)?;
        let url = self.url(&[id.as_str()]);
        let shown = redact(&url);
        match self.call(Method::DELETE, url, None).await? {
            (StatusCode::NO_CONTENT | StatusCode::OK, _) => Ok(()),
            (status, _) => Err(ClientError::Unexpected {
                url: shown,
                what: format!("{status} instead of 204"),
            }),
        }
    }
}

fn plugin_id(id: &str) -> Result<PluginId, ClientError> {
    PluginId::parse(id).map_err(|_| ClientError::BadPluginId(crate::text::safe(id).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> CoreClient {
        CoreClient::with_ca_cert(base, Some("t".into()), Duration::from_secs(1), None).unwrap()
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        assert_eq!(
            client("http://127.0.0.1:8000")
                .url(&["a", "disable"])
                .as_str(),
            "http://127.0.0.1:8000/plugins/a/disable"
        );
        assert_eq!(
            client("http://h:1/core/").url(&[]).as_str(),
            "http://h:1/core/plugins"
        );
        assert_eq!(
            client("http://h:1/core?x=1#f").url(&["p"]).as_str(),
            "http://h:1/core/plugins/p"
        );
    }

    #[test]
    fn bad_urls_are_usage_errors_without_credentials() {
        for (url, needle) in [("nonsense", "not a URL"), ("ftp://u:pw@h", "only http://")] {
            let err = CoreClient::with_ca_cert(url, Some("t".into()), Duration::from_secs(1), None)
                .err()
                .unwrap();
            assert!(err.is_usage());
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(!msg.contains("pw"), "{msg}");
        }
    }

    #[test]
    fn https_is_accepted_and_a_bad_ca_file_is_a_usage_error() {
        assert!(
            CoreClient::with_ca_cert(
                "https://h:1",
                Some("t".into()),
                Duration::from_secs(1),
                None
            )
            .is_ok()
        );
        let dir = std::env::temp_dir().join(format!("vivified-cli-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("text.pem");
        std::fs::write(&text, "hello\n").unwrap();
        for (path, needle) in [
            (dir.join("absent.pem"), "cannot be read"),
            (text, "no PEM certificate"),
        ] {
            let err = CoreClient::with_ca_cert(
                "https://h:1",
                Some("t".into()),
                Duration::from_secs(1),
                Some(&path),
            )
            .err()
            .unwrap();
            assert!(err.is_usage());
            let msg = err.to_string();
            assert!(msg.starts_with("--ca-cert (VIVIFIED_CA_CERT) "), "{msg}");
            assert!(msg.contains(needle), "{msg}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_blank_admin_token_is_a_usage_error() {
        for token in [None, Some("  ".to_owned())] {
            let err = CoreClient::with_ca_cert("http://h:1", token, Duration::from_secs(1), None)
                .err()
                .unwrap();
            assert!(matches!(err, ClientError::NoAdminToken));
        }
    }

    #[test]
    fn plugin_ids_are_checked_before_any_request() {
        assert!(matches!(
            plugin_id("../admin"),
            Err(ClientError::BadPluginId(_))
        ));
        assert!(plugin_id("user-management").is_ok());
    }

    #[test]
    fn core_errors_are_one_line_with_reason() {
        let e = ClientError::Core {
            status: 401,
            code: "unauthorized".into(),
            reason: Some("invalid_token".into()),
            detail: "the token does not verify".into(),
        };
        assert_eq!(
            e.to_string(),
            "the core answered 401 unauthorized (invalid_token): the token does not verify"
        );
    }
}
