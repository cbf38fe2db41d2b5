//! `EventBus`: carries events from the core to plugins.
//!
//! Two kinds of traffic share the port:
//!
//! - **Broadcast** ([`EventBus::publish`]): lifecycle events (`plugin.registered`, …) for
//!   whoever listens now (in-process subscribers, or NATS subscribers of the lifecycle
//!   subjects). Nothing is kept for a listener that is not there.
//! - **Deliveries** ([`EventBus::enqueue`], [`EventBus::pull`]): an event the core has
//!   already checked against policy (and sanitised) for one target plugin goes into that
//!   plugin's own bounded, durable (per the backend's promise) queue, from which the
//!   plugin pulls over HTTP with a cursor. Delivery is at-least-once: an event leaves
//!   the queue only when a later pull acknowledges it by passing a cursor at or after
//!   it, or when the queue's bound pushes it out, which is counted in
//!   [`Pulled::dropped`] and never silent.
//!
//! A [`Cursor`] is an opaque string to everyone but the adapter that issued it: the HTTP
//! layer hands it to the plugin and back, nothing more.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::BoxError;
use crate::plugin::PluginId;

/// One event on the bus. Lifecycle events (`plugin.registered`, …) use the same shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    /// Unique id; deterministic for lifecycle events so consumers can drop duplicates.
    pub event_id: String,
    /// Dotted type, e.g. `plugin.registered`.
    pub event_type: String,
    /// The request's trace id.
    pub trace_id: String,
    /// Publisher: a plugin id, or `core`.
    pub source: String,
    /// Data classification tags of the payload (`phi`, `pii`, …).
    pub data_traits: Vec<String>,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The payload (never logged): a JSON object, as `CanonicalEvent.payload` is a
    /// `google.protobuf.Struct` (an adapter MAY refuse anything else with
    /// [`BusError::Rejected`]).
    pub payload: serde_json::Value,
    /// Small string annotations from the publisher (never logged).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The position of one event in one plugin's delivery queue, as issued by
/// [`EventBus::pull`]. Opaque outside the adapter that issued it: compare, parse or build
/// one only there. Cursors of one queue are ordered as its events are; a cursor issued
/// for a queue that was since removed acknowledges nothing in a new queue of the same
/// plugin.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// Longest cursor any adapter issues; a longer string is not a cursor.
    pub const MAX_LEN: usize = 128;

    /// Wraps a string as a cursor (the HTTP layer does so with `after=…`). Whether it is
    /// one this bus issued is decided by the adapter, which answers
    /// [`BusError::InvalidCursor`] if not.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The cursor as sent to the plugin.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The answer to one [`EventBus::pull`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pulled {
    /// Unacknowledged events, oldest first, each with its cursor.
    pub events: Vec<(Cursor, BusEvent)>,
    /// The cursor to pass as `after` on the next pull: the last event's, or, when no
    /// event is returned, one that acknowledges exactly what `after` did plus the events
    /// counted in `dropped` (so they are not counted again). `None` only when the
    /// target has no queue and no `after` was given.
    pub next_cursor: Option<Cursor>,
    /// How many events enqueued for the target after `after` were pushed out by the
    /// queue's bound before this pull could return them. Without `after`, counted from
    /// the acknowledged floor as the backend keeps it, which a backend MAY have moved
    /// past dropped events (JetStream does): a plugin that wants every drop counted
    /// passes its cursor.
    pub dropped: u64,
}

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached, or refused or failed the operation.
    #[error("event bus unavailable")]
    Unavailable(#[source] BoxError),
    /// The cursor was not issued by this bus (malformed, or past anything enqueued).
    #[error("not a cursor of this event bus")]
    InvalidCursor,
    /// This event cannot be carried, and retrying will not change that (a backend that
    /// encodes events as protobuf `CanonicalEvent`s refuses a payload that is not a
    /// JSON object or does not convert, or an event larger than its messages may be).
    /// The source says why, never with the payload's content.
    #[error("event refused by the event bus")]
    Rejected(#[source] BoxError),
}

/// Carries events: broadcast lifecycle events, and per-plugin delivery queues.
///
/// Concurrency rule for every adapter: any number of tasks (and, where the backend says
/// so, core replicas) may call every method at once; each `enqueue` is atomic, and the
/// events one caller enqueues for one target, one after the other, are queued in that
/// order ("ordering per publisher"). Nothing acknowledged by an `Ok` from `enqueue` is
/// lost except by the queue's bound (counted in [`Pulled::dropped`]) or by
/// [`EventBus::remove_queue`].
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes a broadcast (lifecycle) event to every current subscriber of its type.
    /// It does not go into any delivery queue.
    ///
    /// # Errors
    /// MUST return [`BusError::Unavailable`] if the event could not be accepted, or
    /// [`BusError::Rejected`] if it never can be; an `Ok` means the bus has taken
    /// responsibility for it.
    async fn publish(&self, event: BusEvent) -> Result<(), BusError>;

    /// Whether a lifecycle event published now could reach a subscriber. When it is
    /// `false` the core skips building and publishing the event, and counts it as
    /// published. An adapter that cannot tell (a broker, whose subscribers live
    /// elsewhere) MUST answer `true`, the default; one that answers `false` MUST be one
    /// whose [`EventBus::publish`] would have delivered the event to no one.
    fn has_subscribers(&self) -> bool {
        true
    }

    /// Puts `event`, already checked against policy and sanitised by the core, into the
    /// delivery queue of `target`, creating the queue if it does not exist.
    ///
    /// The event MUST be returned by later pulls of `target` until a pull acknowledges
    /// it, the queue's bound pushes it out (counted in [`Pulled::dropped`]), or the
    /// queue is removed. When the queue already holds its bound of unacknowledged
    /// events, the oldest MUST be dropped to make room (and counted). Enqueueing the
    /// same `event_id` to the same target again MAY be deduplicated by the backend.
    ///
    /// # Errors
    /// MUST return [`BusError::Unavailable`] unless the event is durable as far as the
    /// backend promises (in-process: held by this process; NATS: stored by JetStream,
    /// which acknowledged the publication). An error means the event may or may not be
    /// queued: retrying is safe (deliveries are at-least-once). MUST return
    /// [`BusError::Rejected`] (and queue nothing) for an event this bus can never carry.
    async fn enqueue(&self, target: &PluginId, event: BusEvent) -> Result<(), BusError>;

    /// Long-polls the delivery queue of `target`: returns as soon as at least one
    /// unacknowledged event is available, or when `wait` has passed (with no events).
    ///
    /// `after` acknowledges every event of the queue up to and including it: those
    /// events MUST NOT be returned again, by any replica. Events after it MUST be
    /// returned again by later pulls until acknowledged (at-least-once), also after the
    /// plugin or the core restarted. Returned events MUST be oldest first, at most
    /// `limit` of them (a `limit` of 0 is taken as 1; adapters MAY return fewer), and
    /// contiguous: an event is never returned while an older unacknowledged one that
    /// is still queued is skipped. A `target` without a queue (never enqueued to, or
    /// removed) has no events; its pull waits like any other.
    ///
    /// # Errors
    /// MUST return [`BusError::InvalidCursor`] for an `after` this bus did not issue
    /// (acknowledging nothing), and [`BusError::Unavailable`] if the backend fails.
    async fn pull<'a>(
        &self,
        target: &PluginId,
        after: Option<&'a Cursor>,
        limit: usize,
        wait: Duration,
    ) -> Result<Pulled, BusError>;

    /// Removes the delivery queue of `target` and every event in it (on
    /// deregistration). After it returns `Ok`, no event enqueued before MUST ever be
    /// returned by a pull; a later `enqueue` starts a new, empty queue, which cursors of
    /// the old one do not acknowledge. Removing a queue that does not exist is `Ok`.
    ///
    /// # Errors
    /// MUST return [`BusError::Unavailable`] if the backend fails.
    async fn remove_queue(&self, target: &PluginId) -> Result<(), BusError>;

    /// Checks that the bus can take events now (for `/ready`).
    ///
    /// # Errors
    /// MUST return [`BusError::Unavailable`] if it cannot.
    async fn ping(&self) -> Result<(), BusError>;
}
