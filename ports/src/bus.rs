//! `EventBus`: carries events between the core and plugins.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::BoxError;

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
    /// The payload (never logged).
    pub payload: serde_json::Value,
}

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached.
    #[error("event bus unavailable")]
    Unavailable(#[source] BoxError),
}

/// Publishes events.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes an event to every current subscriber of its type.
    ///
    /// # Errors
    /// MUST return [`BusError::Unavailable`] if the event could not be accepted; an
    /// `Ok` means the bus has taken responsibility for it.
    async fn publish(&self, event: BusEvent) -> Result<(), BusError>;
}
