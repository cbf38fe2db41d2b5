//! The JSON form of [`CanonicalEvent`] spoken over HTTP, its lossless conversions to and
//! from protobuf, and the byte encoding used on the bus.

use std::collections::BTreeMap;

use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::Map;
use time::OffsetDateTime;

use crate::event_type::{EventTypeError, validate_event_type};
use crate::payload::{PayloadError, pack_payload, unpack_payload};
use crate::v1::CanonicalEvent;

/// Earliest `google.protobuf.Timestamp`: 0001-01-01T00:00:00Z.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// Latest whole second of a `google.protobuf.Timestamp`: 9999-12-31T23:59:59Z.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Why a [`CanonicalEvent`] and its JSON form (or its bytes) do not convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// `event_type` does not match `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$` or is too long.
    #[error(transparent)]
    InvalidEventType(#[from] EventTypeError),
    /// The protobuf event has no `timestamp`.
    #[error("event has no timestamp")]
    MissingTimestamp,
    /// The timestamp is outside `0001-01-01T00:00:00Z..=9999-12-31T23:59:59.999999999Z`,
    /// or its `nanos` outside `0..=999_999_999`.
    #[error(
        "event timestamp is outside 0001-01-01T00:00:00Z..=9999-12-31T23:59:59.999999999Z or its nanos outside 0..=999999999"
    )]
    TimestampOutOfRange,
    /// The protobuf event has no `payload`.
    #[error("event has no payload")]
    MissingPayload,
    /// The payload does not convert (see [`PayloadError`]).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The bytes are not a protobuf `CanonicalEvent`.
    #[error("bytes are not a protobuf CanonicalEvent")]
    Decode(#[source] prost::DecodeError),
}

/// The JSON form of [`CanonicalEvent`], as it travels over HTTP:
///
/// ```json
/// {
///   "event_id": "0b6f…", "trace_id": "4bf9…", "event_type": "user.created",
///   "timestamp": "2026-11-28T00:04:37.195035Z", "source_plugin": "user-management",
///   "data_traits": ["pii"], "payload": {"user_id": "u-1"}, "metadata": {"k": "v"}
/// }
/// ```
///
/// `timestamp` is RFC 3339; any offset is accepted and the instant kept, and it is
/// written in UTC (`Z`). `payload` is any JSON object (numbers: see
/// [`crate::payload`]); `data_traits` and `metadata` may be left out (empty). Unknown
/// fields are refused.
///
/// Conversions are lossless both ways: JSON → protobuf → bytes → protobuf → JSON gives
/// back an equal value (for payload numbers as described in [`crate::payload`]). Both
/// directions check `event_type`, the timestamp's range and the payload, so an event that
/// converts one way converts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalEventJson {
    /// Assigned by the core when the event is published.
    pub event_id: String,
    /// The trace id of the request that published the event.
    pub trace_id: String,
    /// Dot-separated segments of `[A-Za-z0-9_-]+` ([`validate_event_type`]).
    pub event_type: String,
    /// When the event was published.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The publishing plugin's id.
    pub source_plugin: String,
    /// `phi`, `pii`, `confidential`, `internal`, `public`, …
    #[serde(default)]
    pub data_traits: Vec<String>,
    /// Any JSON object; carried as a `google.protobuf.Struct` packed in the `Any`.
    pub payload: Map<String, serde_json::Value>,
    /// Free-form string pairs.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl CanonicalEventJson {
    /// Converts to protobuf, packing the payload as a `google.protobuf.Struct`.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidEventType`], [`EventError::TimestampOutOfRange`] (before year
    /// 1), and [`EventError::Payload`] for a payload integer outside `±(2^53 − 1)` or a
    /// payload nested too deep.
    pub fn into_proto(self) -> Result<CanonicalEvent, EventError> {
        validate_event_type(&self.event_type)?;
        let timestamp = timestamp_to_proto(self.timestamp)?;
        let payload = pack_payload(&self.payload)?;
        Ok(CanonicalEvent {
            event_id: self.event_id,
            trace_id: self.trace_id,
            event_type: self.event_type,
            timestamp: Some(timestamp),
            source_plugin: self.source_plugin,
            data_traits: self.data_traits,
            payload: Some(payload),
            metadata: self.metadata,
        })
    }

    /// Converts from protobuf, unpacking the payload.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidEventType`], [`EventError::MissingTimestamp`],
    /// [`EventError::TimestampOutOfRange`], [`EventError::MissingPayload`], and
    /// [`EventError::Payload`] (another type than `google.protobuf.Struct` in the `Any`,
    /// undecodable bytes, a non-finite number, a value without kind, too deep).
    pub fn from_proto(event: CanonicalEvent) -> Result<Self, EventError> {
        validate_event_type(&event.event_type)?;
        let timestamp = event.timestamp.ok_or(EventError::MissingTimestamp)?;
        let timestamp = timestamp_from_proto(timestamp)?;
        let payload = event.payload.ok_or(EventError::MissingPayload)?;
        let payload = unpack_payload(&payload)?;
        Ok(Self {
            event_id: event.event_id,
            trace_id: event.trace_id,
            event_type: event.event_type,
            timestamp,
            source_plugin: event.source_plugin,
            data_traits: event.data_traits,
            payload,
            metadata: event.metadata,
        })
    }

    /// Converts to protobuf and encodes it ([`encode_event`]).
    ///
    /// # Errors
    ///
    /// As [`CanonicalEventJson::into_proto`].
    pub fn into_bytes(self) -> Result<Vec<u8>, EventError> {
        Ok(encode_event(&self.into_proto()?))
    }

    /// Decodes protobuf bytes ([`decode_event`]) and converts them.
    ///
    /// # Errors
    ///
    /// [`EventError::Decode`], then as [`CanonicalEventJson::from_proto`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EventError> {
        Self::from_proto(decode_event(bytes)?)
    }
}

impl TryFrom<CanonicalEventJson> for CanonicalEvent {
    type Error = EventError;

    fn try_from(json: CanonicalEventJson) -> Result<Self, EventError> {
        json.into_proto()
    }
}

impl TryFrom<CanonicalEvent> for CanonicalEventJson {
    type Error = EventError;

    fn try_from(event: CanonicalEvent) -> Result<Self, EventError> {
        Self::from_proto(event)
    }
}

/// Encodes an event as protobuf bytes. Maps encode in key order, so equal events give
/// equal bytes.
#[must_use]
pub fn encode_event(event: &CanonicalEvent) -> Vec<u8> {
    event.encode_to_vec()
}

/// Decodes protobuf bytes into an event, without checking its fields (converting it to
/// [`CanonicalEventJson`] does). Never panics, whatever the bytes.
///
/// # Errors
///
/// [`EventError::Decode`] if the bytes are not a `CanonicalEvent` (truncated, wrong wire
/// types, invalid UTF-8 in a string, nested past prost's recursion limit, …).
pub fn decode_event(bytes: &[u8]) -> Result<CanonicalEvent, EventError> {
    CanonicalEvent::decode(bytes).map_err(EventError::Decode)
}

/// `OffsetDateTime` → `google.protobuf.Timestamp` (the instant; the offset is dropped).
///
/// # Errors
///
/// [`EventError::TimestampOutOfRange`] outside the `Timestamp` range.
pub fn timestamp_to_proto(t: OffsetDateTime) -> Result<prost_types::Timestamp, EventError> {
    let seconds = t.unix_timestamp();
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
        return Err(EventError::TimestampOutOfRange);
    }
    let nanos = i32::try_from(t.nanosecond()).map_err(|_| EventError::TimestampOutOfRange)?;
    Ok(prost_types::Timestamp { seconds, nanos })
}

/// `google.protobuf.Timestamp` → `OffsetDateTime` in UTC.
///
/// # Errors
///
/// [`EventError::TimestampOutOfRange`] outside the `Timestamp` range or for `nanos`
/// outside `0..=999_999_999` (not normalised: that would not round-trip).
pub fn timestamp_from_proto(t: prost_types::Timestamp) -> Result<OffsetDateTime, EventError> {
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&t.seconds)
        || !(0..=999_999_999).contains(&t.nanos)
    {
        return Err(EventError::TimestampOutOfRange);
    }
    let seconds = OffsetDateTime::from_unix_timestamp(t.seconds)
        .map_err(|_| EventError::TimestampOutOfRange)?;
    let nanos = u32::try_from(t.nanos).map_err(|_| EventError::TimestampOutOfRange)?;
    seconds
        .replace_nanosecond(nanos)
        .map_err(|_| EventError::TimestampOutOfRange)
}
