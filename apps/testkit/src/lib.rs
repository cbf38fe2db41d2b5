//! A real Vivified core, in-process, for plugin tests.
//!
//! [`TestCore::start`] builds the core exactly as the `vivified-server` binary does
//! (`vivified_server::Application::build`), on a free loopback port, with the in-memory
//! store, and serves it on a task of the calling tokio runtime. It hands back the URL,
//! the admin token and a handle that stops the core — explicitly with
//! [`TestCore::stop`], or when it is dropped. Nothing is written to disk and nothing
//! needs installing: a plugin author tests registration and heartbeats in `cargo test`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), vivified_testkit::TestkitError> {
//! use std::time::Duration;
//!
//! let core = vivified_testkit::TestCore::builder()
//!     .heartbeat_interval(Duration::from_millis(200))
//!     .start()
//!     .await?;
//! let answer = core.register(&vivified_testkit::manifest("demo", &[])).await?;
//! assert_eq!(answer["status"], "registered");
//! assert_eq!(core.plugins().await?.len(), 1);
//! core.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! Helpers talk to the core as the operator (admin token), as an anonymous client, or
//! as a plugin whose token the test holds ([`TestCore::publish`], [`TestCore::pull`]);
//! they are for test assertions, not a plugin client (that is `vivified-plugin-sdk`).
//!
//! Events between two plugins, one publishing and one subscribed:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), vivified_testkit::TestkitError> {
//! use std::time::Duration;
//! use serde_json::json;
//! use vivified_testkit::{TestCore, manifest, subscriber};
//!
//! let core = TestCore::start().await?;
//! let publisher = core.register(&manifest("ehr", &[])).await?;
//! let reader = core.register(&subscriber("chart", &[], &["patient.*"])).await?;
//! let (pub_token, reader_token) = (
//!     publisher["token"].as_str().unwrap(),
//!     reader["token"].as_str().unwrap(),
//! );
//!
//! let receipt = core
//!     .publish(pub_token, &json!({"event_type": "patient.updated", "payload": {"visit": 3}}))
//!     .await?;
//! assert_eq!(receipt["delivered"], 1);
//!
//! let got = core.pull("chart", reader_token, None, Duration::from_secs(5)).await?;
//! assert_eq!(got["events"][0]["payload"]["visit"], 3);
//! // Passing the cursor acknowledges the event: it does not come again.
//! let cursor = got["next_cursor"].as_str().unwrap();
//! let again = core.pull("chart", reader_token, Some(cursor), Duration::ZERO).await?;
//! assert_eq!(again["events"], json!([]));
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vivified_server::{Application, Settings};

mod builder;

pub use builder::TestCoreBuilder;

/// Why a test core could not start or a helper request failed.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The settings the builder produced were refused.
    #[error("test core settings: {0}")]
    Settings(#[from] vivified_server::settings::SettingsError),
    /// The core did not start.
    #[error("test core did not start: {0}")]
    Start(#[from] vivified_server::StartupError),
    /// A helper request did not get an answer.
    #[error("request to the test core failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A helper request got an answer it did not expect.
    #[error("unexpected answer {status} from the test core: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body (error bodies of the core never carry secrets).
        body: String,
    },
    /// [`TestCore::wait_for_plugin`] gave up.
    #[error("timed out after {0:?} waiting for: {1}")]
    Timeout(Duration, String),
}

fn humantime_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

fn client() -> reqwest::Client {
    vivified_server::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds")
}

/// A running in-process core. Dropping it stops the core (without waiting for open
/// connections); [`TestCore::stop`] stops it and waits until it has.
pub struct TestCore {
    url: String,
    addr: SocketAddr,
    admin_token: String,
    registration_secret: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for TestCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl TestCore {
    /// A builder for a core with non-default settings.
    pub fn builder() -> TestCoreBuilder {
        TestCoreBuilder::default()
    }

    /// A dev-mode core with the defaults of [`TestCoreBuilder`].
    ///
    /// # Errors
    /// As [`TestCoreBuilder::start`].
    pub async fn start() -> Result<Self, TestkitError> {
        Self::builder().start().await
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The registration secret, when one is configured.
    pub fn registration_secret(&self) -> Option<&str> {
        self.registration_secret.as_deref()
    }

    /// Stops accepting, lets open requests finish (at most the request timeout, 5 s by
    /// default) and waits until the core has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Every plugin record (`GET /plugins`, all pages), as JSON.
    ///
    /// # Errors
    /// [`TestkitError`] when the core does not answer 200.
    pub async fn plugins(&self) -> Result<Vec<Value>, TestkitError> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .admin_get(&format!("/plugins?limit=1000&after={after}"))
                .await?
                .ok_or_else(|| TestkitError::Status {
                    status: 404,
                    body: "GET /plugins answered 404".into(),
                })?;
            if let Some(records) = page["plugins"].as_array() {
                all.extend(records.iter().cloned());
            }
            match page["next_after"].as_str() {
                Some(next) => after = next.to_owned(),
                None => return Ok(all),
            }
        }
    }

    /// One plugin's record (`GET /plugins/{id}` as the admin); `None` on 404.
    ///
    /// # Errors
    /// [`TestkitError`] on any answer but 200 or 404.
    pub async fn plugin(&self, id: &str) -> Result<Option<Value>, TestkitError> {
        self.admin_get(&format!("/plugins/{id}")).await
    }

    /// Deregisters a plugin as the admin (`DELETE /plugins/{id}`); `false` if unknown.
    ///
    /// # Errors
    /// [`TestkitError`] on any answer but 204 or 404.
    pub async fn deregister(&self, id: &str) -> Result<bool, TestkitError> {
        let resp = self
            .http
            .delete(format!("{}/plugins/{id}", self.url))
            .bearer_auth(&self.admin_token)
            .send()
            .await?;
        match resp.status().as_u16() {
            204 => Ok(true),
            404 => Ok(false),
            status => Err(TestkitError::Status {
                status,
                body: resp.text().await.unwrap_or_default(),
            }),
        }
    }

    /// Disables a plugin as the admin (`POST /plugins/{id}/disable` with `reason`).
    ///
    /// # Errors
    /// [`TestkitError::Status`] on any answer but 200.
    pub async fn disable(&self, id: &str, reason: &str) -> Result<(), TestkitError> {
        self.admin_post(
            &format!("/plugins/{id}/disable"),
            Some(json!({ "reason": reason })),
        )
        .await
    }

    /// Enables a plugin again as the admin (`POST /plugins/{id}/enable`).
    ///
    /// # Errors
    /// [`TestkitError::Status`] on any answer but 200.
    pub async fn enable(&self, id: &str) -> Result<(), TestkitError> {
        self.admin_post(&format!("/plugins/{id}/enable"), None)
            .await
    }

    /// Revokes, as the admin, the tokens issued until now of plugin `id`
    /// (`POST /plugins/{id}/revoke-before`), or of every plugin when `id` is `None`
    /// (`POST /tokens/revoke-before`).
    ///
    /// # Errors
    /// [`TestkitError::Status`] on any answer but 200.
    pub async fn revoke_tokens(&self, id: Option<&str>) -> Result<(), TestkitError> {
        let path = id.map_or_else(
            || "/tokens/revoke-before".to_owned(),
            |id| format!("/plugins/{id}/revoke-before"),
        );
        self.admin_post(&path, Some(json!({ "at": "now" }))).await
    }

    /// Mints a one-time enrollment token for plugin `id` as the admin
    /// (`POST /enrollments`, one hour) and returns the token.
    ///
    /// # Errors
    /// [`TestkitError::Status`] on any answer but 201.
    pub async fn enroll(&self, id: &str) -> Result<String, TestkitError> {
        let resp = self
            .http
            .post(format!("{}/enrollments", self.url))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "plugin_id": id, "ttl": "1h" }))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        if status != 201 {
            return Err(TestkitError::Status { status, body });
        }
        let answer: Value = serde_json::from_str(&body).map_err(|e| TestkitError::Status {
            status,
            body: format!("not JSON: {e}"),
        })?;
        Ok(answer["token"].as_str().unwrap_or_default().to_owned())
    }

    async fn admin_post(&self, path: &str, body: Option<Value>) -> Result<(), TestkitError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        match resp.status().as_u16() {
            200 | 204 => Ok(()),
            status => Err(TestkitError::Status {
                status,
                body: resp.text().await.unwrap_or_default(),
            }),
        }
    }

    /// Registers `manifest` directly (`POST /plugins/register`, with the registration
    /// secret when there is one) and returns the 200 answer, token included: a quick way
    /// to get a second plugin's token for authorization tests.
    ///
    /// # Errors
    /// [`TestkitError::Status`] with the core's error body on any answer but 200.
    pub async fn register(&self, manifest: &Value) -> Result<Value, TestkitError> {
        let mut req = self
            .http
            .post(format!("{}/plugins/register", self.url))
            .json(manifest);
        if let Some(secret) = &self.registration_secret {
            req = req.bearer_auth(secret);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        if status != 200 {
            return Err(TestkitError::Status { status, body });
        }
        serde_json::from_str(&body).map_err(|e| TestkitError::Status {
            status,
            body: format!("not JSON: {e}"),
        })
    }

    /// Publishes `event` as the plugin whose token is `token` (`POST /events`; the
    /// body is the JSON the API documents: `event_type`, `payload`, `data_traits`,
    /// `metadata`) and returns the 202 answer (`event_id`, `trace_id`, `delivered`,
    /// `sanitized`, `denied`).
    ///
    /// # Errors
    /// [`TestkitError::Status`] with the core's error body on any answer but 202
    /// (e.g. 403 `policy_denied` with its `reason` and `rule`).
    pub async fn publish(&self, token: &str, event: &Value) -> Result<Value, TestkitError> {
        let resp = self
            .http
            .post(format!("{}/events", self.url))
            .bearer_auth(token)
            .json(event)
            .send()
            .await?;
        Self::json_answer(resp, 202).await
    }

    /// One pull of plugin `id`'s events with its `token` (`GET /plugins/{id}/events`):
    /// `after` acknowledges everything up to that cursor, `wait` is how long the core
    /// may wait for a first event. Returns the 200 answer (`events`, `next_cursor`,
    /// `dropped`).
    ///
    /// # Errors
    /// [`TestkitError::Status`] with the core's error body on any answer but 200
    /// (e.g. 403 `plugin_disabled`).
    pub async fn pull(
        &self,
        id: &str,
        token: &str,
        after: Option<&str>,
        wait: Duration,
    ) -> Result<Value, TestkitError> {
        let mut url =
            reqwest::Url::parse(&format!("{}/plugins/{id}/events", self.url)).map_err(|e| {
                TestkitError::Status {
                    status: 0,
                    body: format!("not a URL: {e}"),
                }
            })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(after) = after {
                q.append_pair("after", after);
            }
            q.append_pair("wait", &humantime_ms(wait));
        }
        let resp = self
            .http
            .get(url)
            .timeout(wait + Duration::from_secs(10))
            .bearer_auth(token)
            .send()
            .await?;
        Self::json_answer(resp, 200).await
    }

    /// Pulls `id`'s events (acknowledging each answer with the next pull) until `n`
    /// events have arrived or `timeout` passed, and returns them; the last answer's
    /// `next_cursor` is not acknowledged (pass it to [`TestCore::pull`] to do so).
    ///
    /// # Errors
    /// [`TestkitError::Timeout`] with what arrived, or an error of [`TestCore::pull`].
    pub async fn pull_n(
        &self,
        id: &str,
        token: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>, TestkitError> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        while events.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TestkitError::Timeout(
                    timeout,
                    format!("{n} events for {id} (got {})", events.len()),
                ));
            }
            let answer = self
                .pull(
                    id,
                    token,
                    after.as_deref(),
                    left.min(Duration::from_secs(5)),
                )
                .await?;
            if let Some(batch) = answer["events"].as_array() {
                events.extend(batch.iter().cloned());
            }
            if let Some(next) = answer["next_cursor"].as_str() {
                after = Some(next.to_owned());
            }
        }
        Ok(events)
    }

    async fn json_answer(resp: reqwest::Response, expected: u16) -> Result<Value, TestkitError> {
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        if status != expected {
            return Err(TestkitError::Status { status, body });
        }
        serde_json::from_str(&body).map_err(|e| TestkitError::Status {
            status,
            body: format!("not JSON: {e}"),
        })
    }

    /// Polls the plugin's record every 25 ms until `pred` holds for it (a missing
    /// record is passed as `Value::Null`), and returns it.
    ///
    /// # Errors
    /// [`TestkitError::Timeout`] (naming `what`) if it does not hold within `timeout`.
    pub async fn wait_for_plugin(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, TestkitError> {
        let deadline = Instant::now() + timeout;
        loop {
            let record = self.plugin(id).await?.unwrap_or(Value::Null);
            if pred(&record) {
                return Ok(record);
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::Timeout(
                    timeout,
                    format!("{what} (last record: {record})"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn admin_get(&self, path: &str) -> Result<Option<Value>, TestkitError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token)
            .send()
            .await?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.json().await?)),
            404 => Ok(None),
            status => Err(TestkitError::Status {
                status,
                body: resp.text().await.unwrap_or_default(),
            }),
        }
    }
}

impl Drop for TestCore {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The runtime may be shutting down with the test: do not wait for the drain,
            // free the port now.
            task.abort();
        }
    }
}

/// [`manifest`] with `subscriptions` (event-type patterns; `*` matches one segment).
pub fn subscriber(id: &str, traits: &[&str], subscriptions: &[&str]) -> Value {
    let mut m = manifest(id, traits);
    m["subscriptions"] = json!(subscriptions);
    m
}

/// A valid manifest for `id`, declaring `traits` (strings such as `"handles_pii"`) and
/// the data classification and compliance those traits require, so that the core
/// accepts it: a quick way to get a second plugin with or without a trait.
pub fn manifest(id: &str, traits: &[&str]) -> Value {
    let has = |t: &str| traits.contains(&t);
    let mut all: Vec<&str> = traits.to_vec();
    let mut classes = vec!["internal"];
    if has("handles_pii") {
        classes.push("pii");
    }
    if has("handles_phi") {
        classes.push("phi");
        for needed in ["requires_encryption", "audit_required"] {
            if !all.contains(&needed) {
                all.push(needed);
            }
        }
    }
    let sensitive = has("handles_pii") || has("handles_phi");
    json!({
        "id": id,
        "name": format!("Test plugin {id}"),
        "version": "1.0.0",
        "contracts": [],
        "traits": all,
        "allowed_domains": if has("external_service") { json!(["api.example.com"]) } else { json!([]) },
        "security": {
            "authentication_required": sensitive,
            "data_classification": classes,
        },
        "compliance": {
            "hipaa_controls": if has("handles_phi") { json!(["164.312(a)"]) } else { json!([]) },
            "audit_level": if has("handles_phi") { "detailed" } else { "basic" },
        },
    })
}
