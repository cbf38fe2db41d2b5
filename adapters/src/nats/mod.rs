//! `NatsEventBus`: the event bus on NATS with JetStream, for several core replicas.
//! Plugins never connect to NATS: the core publishes and consumes on their behalf.
//!
//! # The subject scheme
//!
//! With the default prefixes (`NatsBusConfig::subject_prefix` = `vivified`,
//! `NatsBusConfig::stream_prefix` = `VIVIFIED_DELIVER`):
//!
//! | what | where |
//! | --- | --- |
//! | lifecycle events ([`EventBus::publish`]) | core NATS subject `vivified.lifecycle.<event_type>`, e.g. `vivified.lifecycle.plugin.registered`; not stored, for whoever subscribes now |
//! | deliveries to plugin `<id>` ([`EventBus::enqueue`]) | subject `vivified.deliver.<id>`, stored in the JetStream stream `VIVIFIED_DELIVER_<id>` |
//! | the plugin's cursor and redelivery state | the stream's one durable pull consumer, `deliveries` |
//!
//! Each plugin's stream has file storage, **interest** retention (a message is deleted
//! once the consumer has acknowledged it, so acknowledged events — possibly PHI — do
//! not linger on disk), `max_msgs` = the queue bound with discard-old (overflow drops
//! the oldest), and a two-minute duplicate window keyed by the event id (`Nats-Msg-Id`),
//! so an enqueue retried after a lost acknowledgement is stored once. A stream per
//! plugin, rather than one stream with a per-subject bound, makes a plugin's stream
//! sequences contiguous: the gap between a cursor and the oldest message kept is
//! exactly the number of events the bound dropped, and a hole in a fetched batch can be
//! told apart from a drop. Plugin ids (`[a-z0-9-]{1,63}`) are valid subject tokens and
//! stream names as they are. An interest stream discards what it receives while it
//! has no consumer, so a new stream first captures a placeholder subject
//! (`vivified.unready.<id>`), gets its consumer, and only then the delivery subject:
//! a publication before that fails ("no responders") and is retried, never lost.
//! `queue_bound` and `ack_wait` apply to streams and consumers created after a change.
//!
//! # Cursors and acknowledgement
//!
//! A cursor is `<incarnation>.<stream sequence>`, where the incarnation is the stream's
//! creation time in nanoseconds: a stream removed and created again starts its
//! sequences at 1 again, and an old cursor then acknowledges nothing in it.
//! The consumer acknowledges with `AckPolicy::All`: acknowledging a message
//! acknowledges every message up to it. An acknowledgement needs a delivered message's
//! reply subject, so `after = C` is applied by the pull that receives it, on whichever
//! replica: the unacknowledged messages are always redeliverable at once (below), its
//! fetch receives them again, and it acknowledges the highest one at or below `C`
//! (waiting for the server's confirmation), then returns only what follows `C`. If a
//! message at or below `C` is not fetchable yet (its NAK not yet applied, or in flight
//! in another replica's pull), the pull tries again for up to a second before it
//! answers; a later pull applies the rest. The server's ack floor then moves to `C`
//! and the interest stream deletes those messages.
//!
//! `dropped` is the gap between the cursor and the oldest message kept (without a
//! cursor, between the consumer's ack floor and it, which JetStream may move past
//! discarded messages, so a cursor-less pull may count fewer). Replaying a cursor older
//! than one already acknowledged counts the events in between as dropped.
//!
//! # Delivery and redelivery
//!
//! A pull fetches from the durable consumer without waiting on the server (`no_wait`,
//! the request expiring after half a second at most), keeps the contiguous run starting
//! at the oldest unacknowledged sequence, and negatively acknowledges (`NAK`) every
//! message above the cursor it fetched, returned or not, so that they are immediately
//! redeliverable: a plugin that pulls again with the same cursor after a crash gets
//! the same events again **at once**, from any replica. A message whose fetch was
//! interrupted (the core crashed, or the pull was cancelled between the fetch and the
//! NAK) is redelivered by the consumer after `ack_wait` (`NatsBusConfig::ack_wait`,
//! 10 s by default): that is the longest a plugin waits for an unacknowledged event.
//! Until then a pull returns nothing rather than skip it (an event is never returned
//! while an older unacknowledged one is missing from the batch), so nothing is lost to
//! the watermark cursor. The same delay applies once after the bound discarded events
//! that had been returned but not acknowledged: JetStream 2.9 keeps their pending
//! entries until `ack_wait` and delivers nothing new meanwhile.
//!
//! A pull with nothing to return waits on a core subscription to the plugin's delivery
//! subject (every message stored in the stream is also delivered to it), and tries
//! again when something arrives or, while an older event is in flight, every 50 ms.
//!
//! # Wire encoding
//!
//! Events are protobuf `CanonicalEvent`s (`vivified-proto`), encoded by [`encode`] and
//! decoded by [`decode`], the one pair in this module: `source` travels as
//! `source_plugin`, `at` as `timestamp`, the payload (a JSON object) as a
//! `google.protobuf.Struct` packed in the `Any`. An event whose payload does not convert
//! is refused with `BusError::Rejected`. A stored message that does not decode is
//! counted in `dropped`, logged without its content, and acknowledged with the next
//! cursor.

mod pull;
mod queue;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::time::Instant;
use vivified_ports::{BoxError, BusError, BusEvent, Cursor, EventBus, PluginId, Pulled};
use vivified_proto::CanonicalEventJson;

/// The durable consumer of every delivery stream.
const CONSUMER: &str = "deliveries";
/// How often a pull looks again while an older event is in flight elsewhere.
const GAP_RETRY: Duration = Duration::from_millis(50);
/// How long the server keeps a fetch request open (it answers at once when messages
/// are there; this bounds the rare case where it neither delivers nor ends it).
const FETCH_EXPIRES: Duration = Duration::from_millis(500);
/// How long the client waits for the server to end a fetch it was told to end.
const FETCH_GUARD: Duration = Duration::from_secs(5);
/// How long a pull keeps trying to apply the acknowledgement `after` carries when the
/// messages it covers are not fetchable yet.
const ACK_GRACE: Duration = Duration::from_secs(1);
/// The longest a pull waits, whatever `wait` it is given.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// The most events one pull returns.
pub const MAX_PULL: usize = 1000;

/// Settings of a [`NatsEventBus`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsBusConfig {
    /// First tokens of every subject (`vivified`): dot-separated tokens of
    /// `[A-Za-z0-9_-]`.
    pub subject_prefix: String,
    /// Start of every delivery stream's name (`VIVIFIED_DELIVER`); `_<plugin id>` is
    /// appended. `[A-Za-z0-9_-]`.
    pub stream_prefix: String,
    /// Unacknowledged events kept per plugin; beyond it the oldest are dropped and
    /// counted. Applies to streams created from now on.
    pub queue_bound: usize,
    /// How long a fetched message may stay unacknowledged and un-NAKed before the
    /// consumer redelivers it: the longest a plugin waits for an event whose fetch was
    /// interrupted.
    pub ack_wait: Duration,
    /// JetStream replicas of each delivery stream (1 for a single server; 3 in a
    /// cluster for durability across a server loss).
    pub replicas: usize,
    /// Time allowed to connect, and to answer each request to the server.
    pub timeout: Duration,
    /// The setting the URL came from, named in connection errors (`VIVIFIED_BUS` or
    /// `NATS_URL`).
    pub url_setting: &'static str,
    /// An extra CA certificate (PEM file) trusted for the server's certificate, besides
    /// the system's roots (`VIVIFIED_NATS_CA_CERT`). Setting it requires TLS.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate and its key (PEM files) for a server that verifies clients
    /// (`VIVIFIED_NATS_CLIENT_CERT`, `VIVIFIED_NATS_CLIENT_KEY`). Setting it requires TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Default for NatsBusConfig {
    fn default() -> Self {
        Self {
            subject_prefix: "vivified".to_owned(),
            stream_prefix: "VIVIFIED_DELIVER".to_owned(),
            queue_bound: 10_000,
            ack_wait: Duration::from_secs(10),
            replicas: 1,
            timeout: Duration::from_secs(5),
            url_setting: "VIVIFIED_BUS",
            ca_cert: None,
            client_cert: None,
        }
    }
}

/// Why [`NatsEventBus::connect`] failed. Never shows the URL (it may hold credentials).
#[derive(Debug, thiserror::Error)]
pub enum NatsConnectError {
    /// A setting of [`NatsBusConfig`] is out of range.
    #[error("invalid NATS bus setting {field}: {reason}")]
    InvalidConfig {
        /// The field of `NatsBusConfig`.
        field: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// The URL is not a NATS URL.
    #[error("{setting}: not a NATS server URL (expected nats://HOST:PORT or tls://HOST:PORT)")]
    InvalidUrl {
        /// The setting the URL came from.
        setting: &'static str,
    },
    /// A certificate file of the TLS settings cannot be read.
    #[error("{setting}: cannot read {}: {reason}", path.display())]
    TlsFile {
        /// `VIVIFIED_NATS_CA_CERT`, `VIVIFIED_NATS_CLIENT_CERT` or `VIVIFIED_NATS_CLIENT_KEY`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS connection to the server failed (an untrusted or mismatched certificate,
    /// a server without TLS, a refused client certificate).
    #[error(
        "{setting}: TLS with the NATS server failed ({reason}); a server certificate from a private CA needs VIVIFIED_NATS_CA_CERT"
    )]
    Tls {
        /// The setting the URL came from.
        setting: &'static str,
        /// The TLS layer's reason, without the URL.
        reason: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("{setting}: cannot connect to the NATS server ({reason})")]
    Unreachable {
        /// The setting the URL came from.
        setting: &'static str,
        /// The kind of failure, without the URL.
        reason: String,
    },
    /// The server answered but has no JetStream.
    #[error("{setting}: the NATS server does not offer JetStream (start it with -js) ({reason})")]
    NoJetStream {
        /// The setting the URL came from.
        setting: &'static str,
        /// The kind of failure.
        reason: String,
    },
}

/// An [`EventBus`] on NATS: lifecycle events on core NATS subjects, deliveries in one
/// JetStream stream per plugin with a durable pull consumer (see the module docs for the
/// subject scheme). Any number of core replicas may share one server or cluster.
#[derive(Debug)]
pub struct NatsEventBus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsBusConfig,
    /// Plugins whose stream and consumer this process has made sure of.
    ready: Mutex<HashSet<PluginId>>,
}

/// The rustls error inside an I/O error of a TLS handshake, if that is what it is.
fn rustls_error<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e async_nats::rustls::Error> {
    e.downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
}

fn unavailable(what: &'static str, err: impl std::fmt::Display) -> BusError {
    let source: BoxError = format!("{what}: {err}").into();
    BusError::Unavailable(source)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn rejected(err: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Rejected(Box::new(err))
}

/// The wire form of an event on NATS: a protobuf `CanonicalEvent` (`source` →
/// `source_plugin`, `at` → `timestamp`, the payload as a `google.protobuf.Struct` in the
/// `Any`, `metadata` as is).
///
/// # Errors
/// [`BusError::Rejected`] if the payload is not a JSON object or does not convert (an
/// integer beyond 2^53 − 1, nesting too deep), or the event type or time is invalid.
pub fn encode(event: &BusEvent) -> Result<Vec<u8>, BusError> {
    let serde_json::Value::Object(payload) = &event.payload else {
        return Err(BusError::Rejected(
            "the payload is not a JSON object".into(),
        ));
    };
    CanonicalEventJson {
        event_id: event.event_id.clone(),
        trace_id: event.trace_id.clone(),
        event_type: event.event_type.clone(),
        timestamp: event.at,
        source_plugin: event.source.clone(),
        data_traits: event.data_traits.clone(),
        payload: payload.clone(),
        metadata: event.metadata.clone(),
    }
    .into_bytes()
    .map_err(rejected)
}

/// Reads the wire form of an event; `None` if it is not one.
pub fn decode(bytes: &[u8]) -> Option<BusEvent> {
    let event = CanonicalEventJson::from_bytes(bytes).ok()?;
    Some(BusEvent {
        event_id: event.event_id,
        event_type: event.event_type,
        trace_id: event.trace_id,
        source: event.source_plugin,
        data_traits: event.data_traits,
        at: event.timestamp,
        payload: serde_json::Value::Object(event.payload),
        metadata: event.metadata,
    })
}

impl NatsEventBus {
    /// Connects to the NATS server at `url` (`nats://HOST:PORT`, credentials allowed in
    /// the URL; `tls://HOST:PORT` requires TLS, trusting the system's roots and
    /// `config.ca_cert`) and checks that it offers JetStream. A `nats://` server that
    /// offers TLS is spoken to over TLS too.
    ///
    /// # Errors
    /// [`NatsConnectError`], naming `config.url_setting` and never the URL.
    pub async fn connect(url: &str, config: NatsBusConfig) -> Result<Self, NatsConnectError> {
        let subject_ok = config.subject_prefix.split('.').all(is_token);
        if !subject_ok {
            return Err(NatsConnectError::InvalidConfig {
                field: "subject_prefix",
                reason: "dot-separated tokens of letters, digits, '_' and '-'",
            });
        }
        if !is_token(&config.stream_prefix) {
            return Err(NatsConnectError::InvalidConfig {
                field: "stream_prefix",
                reason: "letters, digits, '_' and '-'",
            });
        }
        if config.queue_bound == 0 || i64::try_from(config.queue_bound).is_err() {
            return Err(NatsConnectError::InvalidConfig {
                field: "queue_bound",
                reason: "at least 1",
            });
        }
        if config.ack_wait < Duration::from_secs(1) {
            return Err(NatsConnectError::InvalidConfig {
                field: "ack_wait",
                reason: "at least one second",
            });
        }
        let setting = config.url_setting;
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        let tls_url = scheme.is_some_and(|s| s.eq_ignore_ascii_case("tls"));
        if !(tls_url || scheme.is_none_or(|s| s.eq_ignore_ascii_case("nats"))) {
            return Err(NatsConnectError::InvalidUrl { setting });
        }
        let mut options = async_nats::ConnectOptions::new()
            .name("vivified-core")
            .connection_timeout(config.timeout)
            .request_timeout(Some(config.timeout));
        // Files are checked here, so that a wrong path is named as such rather than
        // reported as a TLS failure.
        let readable = |setting: &'static str, path: &PathBuf| {
            std::fs::File::open(path)
                .map(drop)
                .map_err(|e| NatsConnectError::TlsFile {
                    setting,
                    path: path.clone(),
                    reason: e.to_string(),
                })
        };
        if let Some(ca) = &config.ca_cert {
            readable("VIVIFIED_NATS_CA_CERT", ca)?;
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &config.client_cert {
            readable("VIVIFIED_NATS_CLIENT_CERT", cert)?;
            readable("VIVIFIED_NATS_CLIENT_KEY", key)?;
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        if tls_url {
            options = options.require_tls(true);
        }
        let client = options.connect(url).await.map_err(|e| {
            let source = std::error::Error::source(&e);
            match e.kind() {
                async_nats::ConnectErrorKind::ServerParse => {
                    NatsConnectError::InvalidUrl { setting }
                }
                async_nats::ConnectErrorKind::Tls => NatsConnectError::Tls {
                    setting,
                    reason: source.map_or_else(|| e.to_string(), ToString::to_string),
                },
                // A failed handshake comes back as an I/O error carrying rustls' error.
                _ if source.and_then(rustls_error).is_some() => NatsConnectError::Tls {
                    setting,
                    reason: source
                        .and_then(rustls_error)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                },
                kind => NatsConnectError::Unreachable {
                    setting,
                    reason: kind.to_string(),
                },
            }
        })?;
        let js = jetstream::new(client.clone());
        jetstream_info(&client, config.timeout)
            .await
            .map_err(|reason| NatsConnectError::NoJetStream { setting, reason })?;
        Ok(Self {
            client,
            js,
            config,
            ready: Mutex::new(HashSet::new()),
        })
    }

    /// The settings this bus runs with.
    pub fn config(&self) -> &NatsBusConfig {
        &self.config
    }

    /// The delivery subject of `target`.
    pub fn delivery_subject(&self, target: &PluginId) -> String {
        format!("{}.deliver.{target}", self.config.subject_prefix)
    }

    /// The subject lifecycle events of `event_type` are published on.
    pub fn lifecycle_subject(&self, event_type: &str) -> String {
        format!("{}.lifecycle.{event_type}", self.config.subject_prefix)
    }

    /// The delivery stream of `target`.
    pub fn stream_name(&self, target: &PluginId) -> String {
        format!("{}_{target}", self.config.stream_prefix)
    }

    /// The connection, e.g. to subscribe to lifecycle subjects.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

/// Asks the server for its JetStream account information (`$JS.API.INFO`, answered by
/// every JetStream server version); `Err` with the reason if it does not answer one.
async fn jetstream_info(client: &async_nats::Client, timeout: Duration) -> Result<(), String> {
    let answer = tokio::time::timeout(timeout, client.request("$JS.API.INFO", "".into()))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.kind().to_string())?;
    let body: serde_json::Value =
        serde_json::from_slice(&answer.payload).map_err(|_| "not a JetStream answer".to_owned())?;
    match body.get("error") {
        None => Ok(()),
        Some(error) => Err(error
            .get("description")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("refused")
            .to_owned()),
    }
}

fn cursor(incarnation: u64, seq: u64) -> Cursor {
    Cursor::new(format!("{incarnation}.{seq}"))
}

/// Parses `{incarnation}.{sequence}`.
fn parse_cursor(c: &Cursor) -> Result<(u64, u64), BusError> {
    let raw = c.as_str();
    if raw.len() > Cursor::MAX_LEN {
        return Err(BusError::InvalidCursor);
    }
    let (inc, seq) = raw.split_once('.').ok_or(BusError::InvalidCursor)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(inc) || !digits(seq) {
        return Err(BusError::InvalidCursor);
    }
    match (inc.parse(), seq.parse()) {
        (Ok(inc), Ok(seq)) => Ok((inc, seq)),
        _ => Err(BusError::InvalidCursor),
    }
}

#[async_trait]
impl EventBus for NatsEventBus {
    async fn publish(&self, event: BusEvent) -> Result<(), BusError> {
        if !event.event_type.split('.').all(is_token) {
            return Err(BusError::Rejected(
                "the event type is not a NATS subject".into(),
            ));
        }
        let subject = self.lifecycle_subject(&event.event_type);
        let payload = encode(&event)?;
        self.client
            .publish(subject, payload.into())
            .await
            .map_err(|e| unavailable("publishing a lifecycle event", e))?;
        tokio::time::timeout(self.config.timeout, self.client.flush())
            .await
            .map_err(|_| unavailable("publishing a lifecycle event", "flush timed out"))?
            .map_err(|e| unavailable("publishing a lifecycle event", e))
    }

    async fn enqueue(&self, target: &PluginId, event: BusEvent) -> Result<(), BusError> {
        let payload = encode(&event)?;
        let dedup = !event.event_id.is_empty()
            && event.event_id.len() <= 256
            && !event.event_id.bytes().any(|b| b.is_ascii_control());
        for retry in [false, true] {
            if retry || !self.is_ready(target) {
                self.ensure_queue(target).await?;
            }
            let mut message = jetstream::message::PublishMessage::build()
                .payload(payload.clone().into())
                .expected_stream(self.stream_name(target));
            if dedup {
                message = message.message_id(&event.event_id);
            }
            let ack = match self
                .js
                .send_publish(self.delivery_subject(target), message)
                .await
            {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(_) => return Ok(()),
                Err(e)
                    if !retry
                        && e.kind() == jetstream::context::PublishErrorKind::StreamNotFound =>
                {
                    // Removed meanwhile (by this or another replica): a new queue.
                    self.set_ready(target, false);
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                    return Err(rejected(e));
                }
                Err(e) => return Err(unavailable("enqueueing a delivery", e)),
            }
        }
        Err(unavailable(
            "enqueueing a delivery",
            "the stream kept disappearing",
        ))
    }

    async fn pull<'a>(
        &self,
        target: &PluginId,
        after: Option<&'a Cursor>,
        limit: usize,
        wait: Duration,
    ) -> Result<Pulled, BusError> {
        self.pull_waiting(target, after, limit, wait).await
    }

    async fn remove_queue(&self, target: &PluginId) -> Result<(), BusError> {
        self.set_ready(target, false);
        match self.js.delete_stream(self.stream_name(target)).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                jetstream::context::DeleteStreamErrorKind::JetStream(err)
                    if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(())
                }
                _ => Err(unavailable("removing a delivery stream", e)),
            },
        }
    }

    async fn ping(&self) -> Result<(), BusError> {
        jetstream_info(&self.client, self.config.timeout)
            .await
            .map_err(|reason| unavailable("pinging the NATS server", reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_strictly() {
        assert_eq!(parse_cursor(&Cursor::new("7.42")).unwrap(), (7, 42));
        for bad in ["", "7", "7.", ".4", "+7.4", "7.-4", "7.4.1", "a.b"] {
            assert!(
                matches!(
                    parse_cursor(&Cursor::new(bad)),
                    Err(BusError::InvalidCursor)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn events_round_trip_through_the_wire_encoding() {
        let event = vivified_conformance::bus::bus_event("e1", "src");
        assert_eq!(decode(&encode(&event).unwrap()), Some(event));
        assert_eq!(decode(b"not an event"), None);
    }
}
