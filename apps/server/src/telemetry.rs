//! Logging: structured (JSON by default) to stdout, one trace id on every line.
//!
//! Every line has a top-level `trace_id`: the request's, or `system` for start-up,
//! shutdown, background work and anything outside a request. Nothing here ever records
//! a header value, a body, a token or a secret.
//!
//! The request's trace id travels in a tokio task-local ([`REQUEST`]) set around the
//! request's future, not in a `tracing` span: a span per request cost about a third of
//! the server's CPU on `/health` (measured with the bench harness: 0.54× → 0.88× the
//! bare-axum floor without it), and the formatter reads the task-local just as well.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::error::ApiError;
use crate::settings::LogFormat;

/// The request's trace id, put in the request's extensions by [`trace_and_timeout`].
#[derive(Clone, Debug)]
pub struct TraceId(pub String);

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber writing to `writer`. `RUST_LOG` wins over `level`.
/// Returns false if a subscriber was already installed (tests).
pub fn init<W>(level: &str, format: LogFormat, writer: W) -> bool
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer()
        .fmt_fields(NoFields)
        .with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(layer.event_format(Lines { json: true }))
            .try_init()
            .is_ok(),
        LogFormat::Pretty => registry
            .with(layer.event_format(Lines { json: false }))
            .try_init()
            .is_ok(),
    }
}

/// What every log line inside a request carries.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The trace id.
    pub trace_id: String,
    /// HTTP method.
    pub method: axum::http::Method,
    /// The route template (never the raw path, which may carry ids).
    pub route: String,
}

tokio::task_local! {
    /// The current request, for the log formatter.
    pub static REQUEST: RequestContext;
}

/// Collects an event's fields into a JSON map.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            serde_json::Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

/// The fmt layer formats every new span's fields into its extensions; `JsonLines` reads
/// them from [`SpanFields`] instead, so that work (on every request) is skipped.
struct NoFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for NoFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: tracing_subscriber::fmt::format::Writer<'w>,
        _fields: R,
    ) -> std::fmt::Result {
        Ok(())
    }
}

/// One line per event. JSON (default): `timestamp`, `level`, `target`, `trace_id` (the
/// request's, or `system`), `message`, the event's `fields`, and `request` (method and
/// route template) inside a request. Pretty: the same as `key=value` text.
struct Lines {
    json: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Lines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let message = fields.remove("message").unwrap_or(serde_json::Value::Null);
        let request = REQUEST.try_with(RequestContext::clone).ok();
        let trace_id = request.as_ref().map_or("system", |r| r.trace_id.as_str());
        let meta = event.metadata();
        let timestamp = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        if !self.json {
            let message = message
                .as_str()
                .map_or_else(|| message.to_string(), str::to_owned);
            write!(
                writer,
                "{timestamp} {:>5} {} trace_id={trace_id} {message}",
                meta.level(),
                meta.target()
            )?;
            for (k, v) in &fields {
                write!(writer, " {k}={v}")?;
            }
            return writeln!(writer);
        }
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("trace_id".into(), trace_id.into());
        line.insert("message".into(), message);
        if !fields.is_empty() {
            line.insert("fields".into(), fields.into());
        }
        if let Some(r) = &request {
            line.insert(
                "request".into(),
                serde_json::json!({ "method": r.method.as_str(), "route": r.route }),
            );
        }
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// The trace id of a request: the W3C `traceparent` trace id (wins), else a well-formed
/// `X-Request-Id`, else a fresh one.
pub fn trace_id(headers: &axum::http::HeaderMap) -> String {
    if let Some(id) = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(traceparent_id)
    {
        return id.to_owned();
    }
    if let Some(id) = headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
    {
        return id.to_owned();
    }
    fresh_trace_id()
}

/// A fresh random trace id (32 hex digits, as W3C's). A thread-local xorshift generator
/// seeded from the OS: a syscall per request would cost more than the rest of `/health`.
/// Trace ids correlate log lines; they are not secrets.
fn fresh_trace_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64)> = Cell::new(seed());
    }
    fn seed() -> (u64, u64) {
        let mut buf = [0u8; 16];
        if getrandom::fill(&mut buf).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos());
            buf = t.to_le_bytes();
        }
        let a = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default()) | 1;
        let b = u64::from_le_bytes(buf[8..].try_into().unwrap_or_default()) | 1;
        (a, b)
    }
    STATE.with(|state| {
        // xorshift128+
        let next = |state: &Cell<(u64, u64)>| {
            let (mut s1, s0) = state.get();
            s1 ^= s1 << 23;
            s1 ^= s1 >> 17;
            s1 ^= s0 ^ (s0 >> 26);
            state.set((s0, s1));
            s1.wrapping_add(s0)
        };
        let (a, b) = (next(state), next(state));
        format!("{a:016x}{b:016x}")
    })
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, trace id not all zeros.
fn traceparent_id(v: &str) -> Option<&str> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    ok.then_some(trace)
}

fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The route of the events long poll.
pub const LONG_POLL_ROUTE: &str = "/plugins/{id}/events";

/// Bounds on a request: the general one, and the longest `wait` of the long poll
/// (which gets both).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Every request.
    pub request: std::time::Duration,
    /// Added for the long poll.
    pub long_poll: std::time::Duration,
}

/// Middleware: gives the request its trace id and span, bounds it in time, echoes the
/// id in `X-Request-Id`, and logs one debug line per request (route template, status,
/// latency — never the raw path, which may carry ids, or any header).
pub async fn trace_and_timeout(
    axum::extract::State(timeouts): axum::extract::State<Timeouts>,
    mut req: Request,
    next: Next,
) -> Response {
    let trace_id = trace_id(req.headers());
    req.extensions_mut().insert(TraceId(trace_id.clone()));
    let context = RequestContext {
        trace_id,
        method: req.method().clone(),
        route: req
            .extensions()
            .get::<MatchedPath>()
            .map_or("-", |p| p.as_str())
            .to_owned(),
    };
    // The long poll of events is bounded by its own (capped) `wait`, not by the
    // general request timeout.
    let timeout = if context.route == LONG_POLL_ROUTE {
        timeouts.request.saturating_add(timeouts.long_poll)
    } else {
        timeouts.request
    };
    let header = HeaderValue::from_str(&context.trace_id).ok();
    let route = if context.route == "-" {
        "unmatched".to_owned()
    } else {
        context.route.clone()
    };
    let method = context.method.as_str().to_owned();
    let started = std::time::Instant::now();
    let mut resp = REQUEST
        .scope(context, async move {
            let resp = match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => {
                    tracing::warn!("request timed out");
                    ApiError::Unavailable("request timed out").into_response()
                }
            };
            tracing::debug!(
                status = resp.status().as_u16(),
                latency_us = started.elapsed().as_micros() as u64,
                "request completed"
            );
            resp
        })
        .await;
    metrics::histogram!("vivified_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "vivified_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => resp.status().as_u16().to_string()
    )
    .increment(1);
    if let Some(v) = header {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_sources() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-request-id", "abc-123:x".parse().unwrap());
        assert_eq!(trace_id(&h), "abc-123:x");
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            trace_id(&h),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "traceparent wins"
        );
        let mut bad = axum::http::HeaderMap::new();
        bad.insert("x-request-id", "has spaces and {braces}".parse().unwrap());
        bad.insert(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let generated = trace_id(&bad);
        assert_eq!(generated.len(), 32);
        assert!(!generated.contains("braces"));
        let long = "a".repeat(129);
        assert!(!valid_request_id(&long));
        assert!(valid_request_id(&"a".repeat(128)));
    }
}
