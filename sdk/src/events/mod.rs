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
use crate::client::CoreClient;
use crate::error::{BoxError, ReceiveMessagesError};
use crate::manifest::DataClass;

mod errors;
mod stream;

pub use errors::{PublishError, PullError};
use errors::{publish_error, pull_error};
pub use stream::{EventStream, MessageInbox};

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

/// A shared [`EventHandler`] (the runner keeps one).
pub(crate) type SharedHandler = Arc<dyn EventHandler>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{CoreError, Failure};

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
