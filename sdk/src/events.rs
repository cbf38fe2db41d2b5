//! Events between plugins, through the core: [`CoreClient::publish`] (`POST /events`),
//! [`CoreClient::pull`] (the long poll `GET /plugins/{id}/events`), [`EventStream`],
//! which long-polls in a loop and acknowledges an event only once it was handled, the
//! [`EventHandler`] a [`crate::Runner`] can drive, and [`MessageInbox`], which makes
//! [`crate::CommunicationPlugin::receive_messages`] a one-liner.
//!
//! Delivery is at-least-once: the core returns every event not yet acknowledged, and a
//! pull acknowledges everything up to the cursor it passes as `after`. A handler must
//! therefore tolerate the same `event_id` twice.
//!
//! Nothing here logs a token, a payload or metadata: log lines name the plugin, the
//! event id and type, and the error. [`Event`] and [`OutgoingEvent`] print their
//! payload as `[redacted]` in `Debug`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::backoff::{Backoff, BackoffState};
use crate::canonical::CanonicalMessage;
use crate::client::{CoreClient, CoreError, ErrorBody, Failure};
use crate::error::{BoxError, ReceiveMessagesError};
use crate::manifest::DataClass;

/// Most events one pull may ask for (the core's bound).
pub const MAX_PULL_LIMIT: usize = 1000;

/// The long poll's default wait in an [`EventStream`] (the core caps it with
/// `VIVIFIED_EVENTS_MAX_WAIT`, 30 s by default).
pub const DEFAULT_EVENT_WAIT: Duration = Duration::from_secs(20);

/// An event to publish (`POST /events`). The core sets the source (from the token),
/// the event id, the trace id and the time.
#[derive(Clone, PartialEq, Serialize)]
pub struct OutgoingEvent {
    /// `^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`, at most 255 bytes, e.g. `patient.updated`.
    pub event_type: String,
    /// Any JSON object.
    pub payload: Map<String, Value>,
    /// What the payload carries (`phi`, `pii`, `confidential`, `internal`, `public`, or
    /// a trait a policy file defines); each must be in the publisher's declared
    /// `data_classification`. At most 16.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_traits: Vec<String>,
    /// At most 32 string entries, keys and values at most 256 bytes. Not covered by
    /// sanitising: never put PHI or PII here.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl OutgoingEvent {
    /// An event of `event_type` with an empty payload, no data traits, no metadata.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            payload: Map::new(),
            data_traits: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// A [`CanonicalMessage`] as the payload (proto3 JSON mapping), tagged with the
    /// message's own data traits.
    ///
    /// # Panics
    /// Never: a `CanonicalMessage` always serialises to a JSON object.
    pub fn message(event_type: impl Into<String>, message: &CanonicalMessage) -> Self {
        let payload = match serde_json::to_value(message) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut event = Self::new(event_type);
        event.payload = payload;
        event.data_traits.clone_from(&message.data_traits);
        event
    }

    /// Sets the payload. Anything but a JSON object is refused by [`CoreClient::publish`]
    /// with [`PublishError::InvalidEvent`] before it is sent.
    #[must_use]
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = match payload {
            Value::Object(map) => map,
            // Kept for the check in `publish`, which names the member.
            other => Map::from_iter([(NOT_AN_OBJECT.to_owned(), other)]),
        };
        self
    }

    /// Adds a data trait (`phi`, `pii`, …, or one a policy file defines).
    #[must_use]
    pub fn data_trait(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.data_traits.contains(&name) {
            self.data_traits.push(name);
        }
        self
    }

    /// Adds data traits named like the manifest's data classes.
    #[must_use]
    pub fn data_classes(mut self, classes: impl IntoIterator<Item = DataClass>) -> Self {
        for c in classes {
            self = self.data_trait(c.as_str());
        }
        self
    }

    /// Adds a metadata entry (never PHI or PII: metadata is not sanitised).
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Marks a payload given as a non-object, so `publish` refuses it.
const NOT_AN_OBJECT: &str = "\u{0}vivified-sdk-not-an-object";

impl fmt::Debug for OutgoingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEvent")
            .field("event_type", &self.event_type)
            .field("data_traits", &self.data_traits)
            .field("payload", &format_args!("[redacted]"))
            .field(
                "metadata",
                &format_args!("[{} entries]", self.metadata.len()),
            )
            .finish()
    }
}

/// The core's answer to a publication (`202`): counts only — never who was denied.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Receipt {
    /// The id the core gave the event.
    pub event_id: String,
    /// The request's trace id (also in the core's audit entry for the event).
    pub trace_id: String,
    /// Subscribers that got the event as published.
    pub delivered: u64,
    /// Subscribers that got a sanitised copy (fields the policy names removed).
    pub sanitized: u64,
    /// Subscribers the policy refused.
    pub denied: u64,
}

/// An event delivered to this plugin.
#[derive(Clone, PartialEq, Deserialize)]
pub struct Event {
    /// Pass it as `after` (or [`EventStream::ack`] the event) to acknowledge this
    /// event and every one before it.
    pub cursor: String,
    /// The core's id of the event (the same for every subscriber and on redelivery:
    /// use it to drop duplicates).
    pub event_id: String,
    /// The publication's trace id.
    pub trace_id: String,
    /// E.g. `patient.updated`.
    pub event_type: String,
    /// When the core accepted it; `None` if the core sent a time this SDK cannot read.
    #[serde(default, deserialize_with = "lenient_rfc3339")]
    pub timestamp: Option<OffsetDateTime>,
    /// The publisher's plugin id (set by the core from the publisher's token).
    pub source_plugin: String,
    /// The data traits the publisher declared.
    #[serde(default)]
    pub data_traits: Vec<String>,
    /// The payload — this subscriber's copy: fields the policy sanitises for this
    /// plugin are absent.
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// The publisher's metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Event {
    /// The payload as a `T` (e.g. a [`CanonicalMessage`]).
    ///
    /// # Errors
    /// The payload does not have `T`'s shape.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(self.payload.clone()))
    }

    /// Whether the event carries the data trait `name` (case-insensitively, as the
    /// core compares them).
    pub fn has_data_trait(&self, name: &str) -> bool {
        self.data_traits
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("cursor", &self.cursor)
            .field("event_id", &self.event_id)
            .field("trace_id", &self.trace_id)
            .field("event_type", &self.event_type)
            .field("timestamp", &self.timestamp)
            .field("source_plugin", &self.source_plugin)
            .field("data_traits", &self.data_traits)
            .field("payload", &format_args!("[redacted]"))
            .field(
                "metadata",
                &format_args!("[{} entries]", self.metadata.len()),
            )
            .finish()
    }
}

fn lenient_rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text.and_then(|t| {
        OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
    }))
}

/// One answer of the long poll.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Pulled {
    /// Unacknowledged events, oldest first.
    pub events: Vec<Event>,
    /// The last event's cursor; with no events, a cursor that acknowledges what `after`
    /// did plus the events counted in `dropped`. `None` only for a plugin that never had
    /// a queue and passed no `after`.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// Events the queue's bound pushed out before they could be pulled (never silent).
    #[serde(default)]
    pub dropped: u64,
}

/// Why [`CoreClient::publish`] failed. Never contains a token or the payload.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The client has no plugin token (not registered yet, or built without
    /// [`CoreClient::as_plugin`]).
    #[error("the plugin is not registered with the core yet")]
    NotRegistered,
    /// The event is malformed (a local check, or the core's 400/413/415); `detail`
    /// names the member, never its value. Retrying the same event cannot help.
    #[error("invalid event: {detail}")]
    InvalidEvent {
        /// What is wrong.
        detail: String,
    },
    /// 401: the token was refused (`invalid_token`, `expired_token`, `revoked_token`,
    /// `unknown_plugin`, `missing_credentials`). A runner re-registers.
    #[error("unauthorized ({reason})")]
    Unauthorized {
        /// The core's reason code.
        reason: String,
    },
    /// 403 `plugin_disabled`: an operator disabled the plugin.
    #[error("plugin disabled by an operator")]
    Disabled,
    /// 403 `policy_denied`: a data trait is outside the publisher's declared
    /// classification (or the policy refuses the publication).
    #[error("policy denied the event: {reason} (rule {rule})")]
    PolicyDenied {
        /// The reason code, e.g. `data_trait_outside_source_classification`.
        reason: String,
        /// The rule that decided, e.g. `core.source-classification`.
        rule: String,
    },
    /// Another 403, e.g. `source_plugin_mismatch` or `plugin_token_required`.
    #[error("forbidden ({reason})")]
    Forbidden {
        /// The core's reason code.
        reason: String,
    },
    /// 5xx or 429. A retry may deliver a second copy (with a new `event_id`) to the
    /// subscribers served before the failure.
    #[error("core unavailable ({status})")]
    Unavailable {
        /// HTTP status.
        status: u16,
    },
    /// No answer: connection refused, reset, DNS failure.
    #[error("core unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// No answer within the request timeout; the event may or may not have been
    /// published.
    #[error("core did not answer within {0:?}")]
    Timeout(Duration),
    /// Another answer the API does not document for this request.
    #[error("unexpected answer from the core: {0}")]
    Protocol(String),
}

impl PublishError {
    /// Whether a retry later can succeed with nothing changed here (no answer, a
    /// timeout, 5xx/429). Publishing is not idempotent: a retry may duplicate.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Timeout(_) | Self::Unavailable { .. }
        )
    }
}

/// Why [`CoreClient::pull`] failed. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The client has no plugin token (not registered yet, or built without
    /// [`CoreClient::as_plugin`]).
    #[error("the plugin is not registered with the core yet")]
    NotRegistered,
    /// 400 or a local check: `limit` outside 1–1000, or `after` is not a cursor this
    /// core issued (e.g. a core on the in-memory bus restarted).
    #[error("invalid pull: {detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
    },
    /// 401: the token was refused. A runner re-registers.
    #[error("unauthorized ({reason})")]
    Unauthorized {
        /// The core's reason code.
        reason: String,
    },
    /// 403 `plugin_disabled`: an operator disabled the plugin; it receives nothing new
    /// until enabled.
    #[error("plugin disabled by an operator")]
    Disabled,
    /// Another 403, e.g. a token of another plugin.
    #[error("forbidden ({reason})")]
    Forbidden {
        /// The core's reason code.
        reason: String,
    },
    /// 404.
    #[error("not found")]
    NotFound,
    /// 5xx or 429.
    #[error("core unavailable ({status})")]
    Unavailable {
        /// HTTP status.
        status: u16,
    },
    /// No answer: connection refused, reset, DNS failure.
    #[error("core unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// No answer within `wait` plus the request timeout.
    #[error("core did not answer within {0:?}")]
    Timeout(Duration),
    /// Another answer the API does not document for this request.
    #[error("unexpected answer from the core: {0}")]
    Protocol(String),
}

impl PullError {
    /// Whether a retry later can succeed with nothing changed here.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Timeout(_) | Self::Unavailable { .. }
        )
    }

    /// Whether the core refused the plugin's token itself (re-registration fixes it).
    fn is_token_refused(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized { .. } | Self::Forbidden { .. } | Self::NotFound
        )
    }
}

fn transport_or<E>(
    f: Failure,
    answer: impl FnOnce(u16, ErrorBody) -> E,
    unreachable: impl FnOnce(BoxError) -> E,
    timeout: impl FnOnce(Duration) -> E,
) -> E {
    match f {
        Failure::Transport(CoreError::Timeout(d)) => timeout(d),
        Failure::Transport(CoreError::Unreachable(e)) => unreachable(e),
        Failure::Transport(other) => unreachable(Box::new(other)),
        Failure::Answer { status, body } => answer(status, body),
    }
}

fn publish_error(f: Failure) -> PublishError {
    transport_or(
        f,
        |status, body| match (status, body.error.as_str()) {
            (401, _) => PublishError::Unauthorized {
                reason: body.reason.unwrap_or_else(|| "unauthorized".into()),
            },
            (403, "plugin_disabled") => PublishError::Disabled,
            (403, "policy_denied") => PublishError::PolicyDenied {
                reason: body.reason.unwrap_or_else(|| "policy_denied".into()),
                rule: body.rule.unwrap_or_default(),
            },
            (403, _) => PublishError::Forbidden {
                reason: body.reason.clone().unwrap_or_else(|| body.code()),
            },
            (400 | 413 | 415 | 422, _) => PublishError::InvalidEvent {
                detail: body.detail.clone().unwrap_or_else(|| body.code()),
            },
            (429 | 500..=599, _) => PublishError::Unavailable { status },
            _ => PublishError::Protocol(format!("{status} {}", body.code())),
        },
        PublishError::Unreachable,
        PublishError::Timeout,
    )
}

fn pull_error(f: Failure) -> PullError {
    transport_or(
        f,
        |status, body| match (status, body.error.as_str()) {
            (401, _) => PullError::Unauthorized {
                reason: body.reason.unwrap_or_else(|| "unauthorized".into()),
            },
            (403, "plugin_disabled") => PullError::Disabled,
            (403, _) => PullError::Forbidden {
                reason: body.reason.clone().unwrap_or_else(|| body.code()),
            },
            (404, _) => PullError::NotFound,
            (400, _) => PullError::InvalidRequest {
                detail: body.detail.clone().unwrap_or_else(|| body.code()),
            },
            (429 | 500..=599, _) => PullError::Unavailable { status },
            _ => PullError::Protocol(format!("{status} {}", body.code())),
        },
        PullError::Unreachable,
        PullError::Timeout,
    )
}

impl CoreClient {
    /// `POST /events` as this client's plugin ([`CoreClient::as_plugin`], or the
    /// runner's client, which always holds the current token).
    ///
    /// # Errors
    /// [`PublishError`]: `PolicyDenied { reason, rule }` when a data trait is outside
    /// the plugin's classification, `Disabled`, `Unauthorized` (the runner, if any, is
    /// told to re-register), `InvalidEvent`, and the transient ones.
    pub async fn publish(&self, event: OutgoingEvent) -> Result<Receipt, PublishError> {
        if event.payload.contains_key(NOT_AN_OBJECT) {
            return Err(PublishError::InvalidEvent {
                detail: "`payload` must be a JSON object".into(),
            });
        }
        let shared = self.identity().ok_or(PublishError::NotRegistered)?;
        let token = shared.token().ok_or(PublishError::NotRegistered)?;
        let req = self
            .http()
            .post(format!("{}/events", self.base_url()))
            .bearer_auth(token.expose())
            .json(&event);
        let body = match self.exchange(req, self.timeout()).await {
            Ok(body) => body,
            Err(f) => {
                let e = publish_error(f);
                if matches!(e, PublishError::Unauthorized { .. }) {
                    shared.token_refused.notify_one();
                }
                return Err(e);
            }
        };
        serde_json::from_slice(&body)
            .map_err(|e| PublishError::Protocol(format!("publish answer: {e}")))
    }

    /// One long poll of this client's plugin's queue: `GET /plugins/{id}/events`.
    /// `after` acknowledges every event up to and including that cursor; the core
    /// waits up to `wait` (capped by the core) for a first event; at most `limit`
    /// (1–1000) events come back. The HTTP timeout is `wait` plus the request timeout.
    ///
    /// # Errors
    /// [`PullError`]: `Disabled`, `Unauthorized` (the runner, if any, is told to
    /// re-register), `InvalidRequest` (a bad `limit`, or a cursor the core does not
    /// know), and the transient ones.
    pub async fn pull(
        &self,
        after: Option<&str>,
        wait: Duration,
        limit: usize,
    ) -> Result<Pulled, PullError> {
        if !(1..=MAX_PULL_LIMIT).contains(&limit) {
            return Err(PullError::InvalidRequest {
                detail: format!("`limit` must be between 1 and {MAX_PULL_LIMIT}"),
            });
        }
        let shared = self.identity().ok_or(PullError::NotRegistered)?;
        let token = shared.token().ok_or(PullError::NotRegistered)?;
        let mut url = reqwest::Url::parse(&format!(
            "{}/plugins/{}/events",
            self.base_url(),
            shared.plugin_id
        ))
        .map_err(|e| PullError::Protocol(format!("pull URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(after) = after {
                q.append_pair("after", after);
            }
            q.append_pair("wait", &format!("{}ms", wait.as_millis()));
            q.append_pair("limit", &limit.to_string());
        }
        let timeout = wait.saturating_add(self.timeout());
        let req = self
            .http()
            .get(url)
            .timeout(timeout)
            .bearer_auth(token.expose());
        let body = match self.exchange(req, timeout).await {
            Ok(body) => body,
            Err(f) => {
                let e = pull_error(f);
                if e.is_token_refused() {
                    shared.token_refused.notify_one();
                }
                return Err(e);
            }
        };
        serde_json::from_slice(&body).map_err(|e| PullError::Protocol(format!("pull answer: {e}")))
    }
}

/// Handles one event. Return `Ok` once the event is dealt with (it is then
/// acknowledged); an error leaves it unacknowledged, so it comes again (after a
/// backoff). Implemented for closures `Fn(Event) -> impl Future<Output = Result<(),
/// BoxError>>` and for any type that implements it (e.g. the plugin itself).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Handles `event`.
    ///
    /// # Errors
    /// Anything: the event is not acknowledged and comes again. Never put the
    /// payload in the error; it is logged.
    async fn on_event(&self, event: Event) -> Result<(), BoxError>;
}

#[async_trait]
impl<F, Fut> EventHandler for F
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    async fn on_event(&self, event: Event) -> Result<(), BoxError> {
        self(event).await
    }
}

/// Long-polls this plugin's queue in a loop and hands out events one at a time,
/// acknowledging each only when told to ([`EventStream::ack`]) — or, with
/// [`EventStream::run`], when the handler returned `Ok`.
///
/// - An event handed out by [`EventStream::next`] and not acknowledged before the
///   next call comes again (after a backoff), with everything after it.
/// - No answer, a timeout, 5xx: retried with capped exponential backoff and jitter.
/// - Built from a runner's client ([`crate::PluginContext::events`],
///   [`crate::RunnerHandle::events`]): the stream always uses the runner's current
///   token; while the plugin is not registered yet, disabled, or its token is
///   refused, the stream waits and retries (on a refused token it also tells the
///   runner, which re-registers at once).
/// - Built from [`CoreClient::as_plugin`] (a fixed token): those errors are returned.
/// - A cursor the core does not know (a core on the in-memory bus restarted) is
///   dropped with a warning, and the stream continues from the queue's start.
///
/// Dropping a stream (or a `next` future) loses nothing: unacknowledged events stay
/// in the core's queue.
#[derive(Debug)]
pub struct EventStream {
    client: CoreClient,
    wait: Duration,
    limit: usize,
    core_backoff: BackoffState,
    handler_backoff: BackoffState,
    /// Sent as `after`: everything up to it is acknowledged.
    after: Option<String>,
    buffer: VecDeque<Event>,
    /// The cursor of the event (or batch) handed out and not acknowledged yet.
    pending: Option<String>,
    dropped: u64,
}

impl EventStream {
    /// A stream over `client`'s plugin queue: a runner's client, or
    /// [`CoreClient::as_plugin`]. Long polls of [`DEFAULT_EVENT_WAIT`], 100 events at a
    /// time, the default [`Backoff`].
    pub fn new(client: CoreClient) -> Self {
        Self {
            client,
            wait: DEFAULT_EVENT_WAIT,
            limit: 100,
            core_backoff: BackoffState::new(Backoff::default()),
            handler_backoff: BackoffState::new(Backoff::default()),
            after: None,
            buffer: VecDeque::new(),
            pending: None,
            dropped: 0,
        }
    }

    /// How long each long poll waits for a first event (the core caps it).
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Events per pull, 1–1000 (clamped).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, MAX_PULL_LIMIT);
        self
    }

    /// Retry delays after failures (the core down, a handler error).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.core_backoff = BackoffState::new(backoff);
        self.handler_backoff = BackoffState::new(backoff);
        self
    }

    /// The cursor sent as `after` on the next pull (everything up to it is
    /// acknowledged, or will be by that pull).
    pub fn acknowledged(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// Events the core's queue bound dropped before this stream could pull them, in
    /// total (each drop is also logged as a warning).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Acknowledges `event` and every event handed out before it: its cursor goes as
    /// `after` with the next pull.
    pub fn ack(&mut self, event: &Event) {
        if self.pending.as_deref() == Some(event.cursor.as_str()) {
            self.pending = None;
        }
        self.after = Some(event.cursor.clone());
        self.handler_backoff.reset();
    }

    /// The next event, long-polling (and retrying, see the type's docs) as long as
    /// needed. Cancel-safe.
    ///
    /// # Errors
    /// Only for a stream with a fixed token, errors retrying cannot fix
    /// (`Unauthorized`, `Disabled`, `Forbidden`, `NotFound`, `NotRegistered`,
    /// `InvalidRequest`, `Protocol`). A runner's stream never fails.
    pub async fn next(&mut self) -> Result<Event, PullError> {
        if self.pending.take().is_some() {
            // The last event was not acknowledged: it (and what followed it) must come
            // again, so forget the batch and pull from the acknowledged cursor.
            self.buffer.clear();
            tokio::time::sleep(self.handler_backoff.next_delay()).await;
        }
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.pending = Some(event.cursor.clone());
                return Ok(event);
            }
            self.fill(self.limit).await?;
        }
    }

    /// Hands out up to `limit` events with at most one pull (waiting up to the
    /// stream's `wait` for a first event), without retrying, and acknowledges the
    /// events the previous call handed out: a batch counts as handled once the caller
    /// asks for the next one. For [`crate::CommunicationPlugin::receive_messages`]
    /// (see [`MessageInbox`]); do not mix with [`EventStream::next`].
    ///
    /// # Errors
    /// [`PullError`] from the pull (nothing is acknowledged or lost).
    pub async fn receive(&mut self, limit: usize) -> Result<Vec<Event>, PullError> {
        if let Some(cursor) = self.pending.take() {
            self.after = Some(cursor);
        }
        if self.buffer.is_empty() {
            self.pull_once(self.limit.max(limit.min(MAX_PULL_LIMIT)))
                .await?;
        }
        let n = limit.min(self.buffer.len());
        let batch: Vec<Event> = self.buffer.drain(..n).collect();
        self.pending = batch.last().map(|e| e.cursor.clone());
        Ok(batch)
    }

    /// Runs `handler` on every event until `stop` completes: an event is acknowledged
    /// only when the handler returned `Ok`; after an error it comes again after a
    /// backoff. A handler already running when `stop` completes is finished first.
    ///
    /// # Errors
    /// As [`EventStream::next`] (never for a runner's stream).
    pub async fn run<H: EventHandler + ?Sized>(
        mut self,
        handler: &H,
        stop: impl Future<Output = ()>,
    ) -> Result<(), PullError> {
        let mut stop = std::pin::pin!(stop);
        loop {
            let event = tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                r = self.next() => r?,
            };
            let (cursor, event_id, event_type) = (
                event.cursor.clone(),
                event.event_id.clone(),
                event.event_type.clone(),
            );
            match handler.on_event(event).await {
                Ok(()) => {
                    self.pending = None;
                    self.after = Some(cursor);
                    self.handler_backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(
                        plugin_id = %self.plugin_id(),
                        event_id = %event_id,
                        event_type = %event_type,
                        attempt = self.handler_backoff.failures() + 1,
                        error = %e,
                        "event handler failed; the event will be delivered again"
                    );
                }
            }
        }
    }

    fn plugin_id(&self) -> &str {
        self.client.identity().map_or("", |s| s.plugin_id.as_str())
    }

    fn managed(&self) -> bool {
        self.client.identity().is_some_and(|s| s.managed)
    }

    /// One pull into the buffer, retrying as the type's docs say.
    async fn fill(&mut self, limit: usize) -> Result<(), PullError> {
        loop {
            let e = match self.pull_once(limit).await {
                Ok(()) => {
                    self.core_backoff.reset();
                    return Ok(());
                }
                Err(e) => e,
            };
            let managed = self.managed();
            let retry = match &e {
                PullError::InvalidRequest { .. } if self.after.is_some() => {
                    tracing::warn!(plugin_id = %self.plugin_id(), error = %e, "the core does not know this stream's cursor; continuing from the queue's acknowledged start");
                    self.after = None;
                    continue;
                }
                e if e.is_transient() => true,
                PullError::NotRegistered | PullError::Disabled => managed,
                e if e.is_token_refused() => managed,
                _ => managed,
            };
            if !retry {
                return Err(e);
            }
            let delay = self.core_backoff.next_delay();
            tracing::warn!(
                plugin_id = %self.plugin_id(),
                attempt = self.core_backoff.failures(),
                retry_in_ms = delay.as_millis() as u64,
                error = %e,
                "pulling events failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One pull into the buffer (which must be empty).
    async fn pull_once(&mut self, limit: usize) -> Result<(), PullError> {
        let pulled = self
            .client
            .pull(self.after.as_deref(), self.wait, limit)
            .await?;
        if pulled.dropped > 0 {
            self.dropped = self.dropped.saturating_add(pulled.dropped);
            tracing::warn!(plugin_id = %self.plugin_id(), dropped = pulled.dropped, "the core's queue bound dropped events before they were pulled");
        }
        if pulled.events.is_empty() {
            // Acknowledges what `after` did plus the dropped events.
            if pulled.next_cursor.is_some() {
                self.after = pulled.next_cursor;
            }
        } else {
            tracing::debug!(plugin_id = %self.plugin_id(), events = pulled.events.len(), "events pulled");
            self.buffer.extend(pulled.events);
        }
        Ok(())
    }
}

/// [`crate::CommunicationPlugin::receive_messages`] over the core's events: each
/// event's payload is a [`CanonicalMessage`] (as [`OutgoingEvent::message`] publishes
/// it). Messages one call returns are acknowledged by the next call (at-least-once: if
/// the plugin stops in between, they come again).
///
/// ```no_run
/// use vivified_plugin_sdk::{
///     async_trait, CanonicalMessage, CommunicationPlugin, MessageInbox, OutgoingEvent,
///     ReceiveMessagesError, SendMessageError,
/// };
/// # use vivified_plugin_sdk::{InitializeError, Manifest, Plugin, PluginContext};
///
/// struct Mail {
///     inbox: std::sync::OnceLock<MessageInbox>,
///     client: std::sync::OnceLock<vivified_plugin_sdk::CoreClient>,
/// }
/// # #[async_trait]
/// # impl Plugin for Mail {
/// #     fn manifest(&self) -> Manifest {
/// #         Manifest::builder("mail", "Mail", "0.1.0")
/// #             .subscriptions(["message.*"])
/// #             .build()
/// #             .expect("a valid manifest")
/// #     }
/// #     async fn initialize(&self, ctx: PluginContext) -> Result<(), InitializeError> {
/// #         let _ = self.inbox.set(MessageInbox::new(ctx.events()));
/// #         let _ = self.client.set(ctx.client());
/// #         Ok(())
/// #     }
/// # }
///
/// #[async_trait]
/// impl CommunicationPlugin for Mail {
///     async fn send_message(&self, m: CanonicalMessage) -> Result<String, SendMessageError> {
///         let client = self.client.get().ok_or(SendMessageError::Rejected("starting".into()))?;
///         let receipt = client
///             .publish(OutgoingEvent::message("message.sent", &m))
///             .await
///             .map_err(|e| SendMessageError::Unavailable(Box::new(e)))?;
///         Ok(receipt.event_id)
///     }
///
///     async fn receive_messages(&self, limit: usize) -> Result<Vec<CanonicalMessage>, ReceiveMessagesError> {
///         match self.inbox.get() {
///             Some(inbox) => inbox.receive(limit).await,
///             None => Ok(Vec::new()),
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct MessageInbox {
    stream: tokio::sync::Mutex<EventStream>,
}

impl MessageInbox {
    /// An inbox over `stream` (its `wait` is how long a call waits for a first message;
    /// e.g. `ctx.events().wait(Duration::ZERO)` to never wait).
    pub fn new(stream: EventStream) -> Self {
        Self {
            stream: tokio::sync::Mutex::new(stream),
        }
    }

    /// Up to `limit` messages, oldest first. An event whose payload is not a
    /// `CanonicalMessage` is skipped (and acknowledged) with a warning naming its id;
    /// a message without data traits gets the event's.
    ///
    /// # Errors
    /// [`ReceiveMessagesError::Unavailable`] with the [`PullError`] as its source.
    pub async fn receive(
        &self,
        limit: usize,
    ) -> Result<Vec<CanonicalMessage>, ReceiveMessagesError> {
        let mut stream = self.stream.lock().await;
        let events = stream
            .receive(limit)
            .await
            .map_err(|e| ReceiveMessagesError::Unavailable(Box::new(e)))?;
        let plugin_id = stream.plugin_id().to_owned();
        Ok(events
            .into_iter()
            .filter_map(|event| match event.payload_as::<CanonicalMessage>() {
                Ok(mut m) => {
                    if m.data_traits.is_empty() {
                        m.data_traits = event.data_traits;
                    }
                    Some(m)
                }
                Err(e) => {
                    tracing::warn!(plugin_id = %plugin_id, event_id = %event.event_id, event_type = %event.event_type, error = %e, "an event is not a message; skipped");
                    None
                }
            })
            .collect())
    }
}

/// A shared [`EventHandler`] (the runner keeps one).
pub(crate) type SharedHandler = Arc<dyn EventHandler>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_events_serialise_what_the_core_reads() {
        let e = OutgoingEvent::new("patient.updated")
            .payload(serde_json::json!({"visit": 3}))
            .data_classes([DataClass::Phi])
            .data_trait("phi")
            .metadata("origin", "ward-7");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"event_type": "patient.updated", "payload": {"visit": 3},
                "data_traits": ["phi"], "metadata": {"origin": "ward-7"}})
        );
        let minimal = serde_json::to_value(OutgoingEvent::new("a")).unwrap();
        assert_eq!(
            minimal,
            serde_json::json!({"event_type": "a", "payload": {}})
        );
        let debug = format!("{e:?}");
        assert!(
            !debug.contains("visit") && !debug.contains("ward-7"),
            "{debug}"
        );
    }

    #[test]
    fn incoming_events_parse_and_never_print_their_payload() {
        let e: Event = serde_json::from_value(serde_json::json!({
            "cursor": "c1", "event_id": "e1", "trace_id": "t1", "event_type": "x.y",
            "timestamp": "2026-11-29T20:00:00Z", "source_plugin": "ehr",
            "data_traits": ["PHI"], "payload": {"name": "Jane Roe"}, "metadata": {"k": "secret-ish"}
        }))
        .unwrap();
        assert!(e.timestamp.is_some());
        assert!(e.has_data_trait("phi"));
        let debug = format!("{e:?}");
        assert!(
            !debug.contains("Jane") && !debug.contains("secret-ish"),
            "{debug}"
        );
        let odd: Event = serde_json::from_value(serde_json::json!({
            "cursor": "c", "event_id": "e", "trace_id": "t", "event_type": "x",
            "timestamp": "", "source_plugin": "s"
        }))
        .unwrap();
        assert_eq!(odd.timestamp, None);
        assert!(odd.payload.is_empty());
    }

    fn answer(status: u16, body: serde_json::Value) -> Failure {
        Failure::Answer {
            status,
            body: serde_json::from_value(body).unwrap(),
        }
    }

    #[test]
    fn answers_map_to_typed_errors() {
        use serde_json::json;
        assert!(matches!(
            publish_error(answer(403, json!({"error": "policy_denied", "reason": "r", "rule": "core.x"}))),
            PublishError::PolicyDenied { reason, rule } if reason == "r" && rule == "core.x"
        ));
        assert!(matches!(
            publish_error(answer(403, json!({"error": "plugin_disabled"}))),
            PublishError::Disabled
        ));
        assert!(matches!(
            publish_error(answer(403, json!({"error": "forbidden", "reason": "source_plugin_mismatch"}))),
            PublishError::Forbidden { reason } if reason == "source_plugin_mismatch"
        ));
        assert!(matches!(
            publish_error(answer(401, json!({"error": "unauthorized", "reason": "revoked_token"}))),
            PublishError::Unauthorized { reason } if reason == "revoked_token"
        ));
        assert!(matches!(
            publish_error(answer(400, json!({"error": "invalid_body", "detail": "`event_type` is required"}))),
            PublishError::InvalidEvent { detail } if detail.contains("event_type")
        ));
        assert!(publish_error(answer(503, json!({}))).is_transient());
        assert!(matches!(
            pull_error(answer(403, json!({"error": "plugin_disabled"}))),
            PullError::Disabled
        ));
        assert!(matches!(
            pull_error(answer(400, json!({"error": "invalid_body"}))),
            PullError::InvalidRequest { .. }
        ));
        assert!(pull_error(answer(502, json!({}))).is_transient());
        assert!(
            pull_error(Failure::Transport(CoreError::Timeout(Duration::from_secs(
                1
            ))))
            .is_transient()
        );
        assert!(matches!(
            pull_error(answer(418, json!({"error": "teapot"}))),
            PullError::Protocol(m) if m == "418 teapot"
        ));
    }
}
