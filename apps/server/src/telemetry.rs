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

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::error::ApiError;
use crate::settings::LogFormat;

/// The request's trace id, as an extractor: the one [`TraceLayer`] gave the request
/// (read from the request's task-local [`RequestContext`], so nothing is added to the
/// request's extensions), or, outside the layer, one derived from the headers as the
/// layer would.
#[derive(Clone, Debug)]
pub struct TraceId(pub Arc<str>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TraceId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(TraceId(
            REQUEST
                .try_with(|r| Arc::clone(&r.trace_id))
                .unwrap_or_else(|_| request_trace_id(&parts.headers).0),
        ))
    }
}

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// W3C `traceparent` (a static name: looking a header up by `&str` parses the name on
/// every request).
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

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
    pub trace_id: Arc<str>,
    /// HTTP method.
    pub method: Method,
    /// The route template (never the raw path, which may carry ids); `None` for a path
    /// that matched no route.
    pub route: Option<&'static str>,
}

impl RequestContext {
    /// The route template, or `-` for a path that matched no route.
    pub fn route(&self) -> &str {
        self.route.unwrap_or("-")
    }
}

tokio::task_local! {
    /// The current request, for the log formatter.
    pub static REQUEST: RequestContext;
}

/// An event's fields as a JSON map (sorted by name; a later value for a name replaces
/// an earlier one). Field names are `'static` in `tracing`: no key is copied.
#[derive(Default)]
struct JsonFields(std::collections::BTreeMap<&'static str, serde_json::Value>);

impl tracing::field::Visit for JsonFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        // Non-finite numbers have no JSON form: null.
        self.0.insert(field.name(), value.into());
    }
}

/// The fmt layer formats every new span's fields into its extensions; [`Lines`] does
/// not read them (the request's context is a task-local), so that work is skipped.
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

/// A JSON log line, members in name order (what `serde_json` writes for a map).
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    fields: &'a std::collections::BTreeMap<&'static str, serde_json::Value>,
    level: &'static str,
    message: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestLine<'a>>,
    target: &'a str,
    timestamp: &'a str,
    trace_id: &'a str,
}

/// The `request` member of a [`JsonLine`].
#[derive(serde::Serialize)]
struct RequestLine<'a> {
    method: &'a str,
    route: &'a str,
}

/// One line per event, through `tracing-subscriber`'s fmt layer: this formats the
/// line, the layer hands it to the writer. JSON (default): `timestamp`, `level`,
/// `target`, `trace_id` (the request's, or `system`), `message`, the event's `fields`,
/// and `request` (method and route template) inside a request, serialised by
/// `serde_json`. Pretty: the same as `key=value` text.
///
/// A `FormatEvent` of ours rather than the layer's `json()` formatter because the
/// trace id is a top-level member read from the request's task-local ([`REQUEST`]),
/// which the built-in formatter cannot place there.
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
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let JsonFields(mut fields) = fields;
        let message = fields.remove("message").unwrap_or(serde_json::Value::Null);
        let meta = event.metadata();
        let timestamp = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| std::fmt::Error)?;
        // The whole line, with the request's context if there is one.
        let line = |w: &mut tracing_subscriber::fmt::format::Writer<'_>,
                    request: Option<&RequestContext>| {
            let trace_id = request.map_or("system", |r| &*r.trace_id);
            if !self.json {
                let text = match &message {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                write!(
                    w,
                    "{timestamp} {:>5} {} trace_id={trace_id} {text}",
                    meta.level(),
                    meta.target()
                )?;
                for (k, v) in &fields {
                    write!(w, " {k}={v}")?;
                }
                return writeln!(w);
            }
            let line = JsonLine {
                fields: &fields,
                level: meta.level().as_str(),
                message: &message,
                request: request.map(|r| RequestLine {
                    method: r.method.as_str(),
                    route: r.route(),
                }),
                target: meta.target(),
                timestamp: &timestamp,
                trace_id,
            };
            let json = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
            w.write_str(&json)?;
            w.write_char('\n')
        };
        match REQUEST.try_with(|r| line(&mut writer, Some(r))) {
            Ok(written) => written,
            Err(_) => line(&mut writer, None),
        }
    }
}

/// The trace id of a request: the W3C `traceparent` trace id (wins), else a well-formed
/// `X-Request-Id`, else a fresh one.
pub fn trace_id(headers: &axum::http::HeaderMap) -> String {
    request_trace_id(headers).0.to_string()
}

/// [`trace_id`], shared, with its `X-Request-Id` header value (`None` only if it
/// could not be one, which the checks above rule out).
fn request_trace_id(headers: &axum::http::HeaderMap) -> (Arc<str>, Option<HeaderValue>) {
    if let Some(id) = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(traceparent_id)
    {
        return (Arc::from(id), HeaderValue::from_str(id).ok());
    }
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && let Some(id) = v.to_str().ok().filter(|v| valid_request_id(v))
    {
        // The incoming value is echoed as is (a cheap copy of shared bytes).
        return (Arc::from(id), Some(v.clone()));
    }
    let id = fresh_trace_id();
    // 32 hex digits: always a valid header value.
    let header = HeaderValue::from_bytes(&id).ok();
    let id = std::str::from_utf8(&id).unwrap_or("0");
    (Arc::from(id), header)
}

/// A fresh random trace id (32 hex digits, as W3C's), from `fastrand`'s per-thread
/// generator (seeded from the operating system): a system call per request would cost
/// more than the rest of `/health`. Trace ids correlate log lines; they are not secrets.
fn fresh_trace_id() -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 lowercase hex digits: `{:032x}` of a u128 is exactly 32 ASCII bytes.
    let text = format!("{:032x}", fastrand::u128(..));
    out.copy_from_slice(text.as_bytes());
    out
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

/// Bounds on a request: its time (the general bound, and the longest `wait` of the
/// long poll, which gets both) and the size of its header fields.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Every request.
    pub request: std::time::Duration,
    /// Added for the long poll.
    pub long_poll: std::time::Duration,
    /// The most bytes of header fields ([`header_bytes`]) a request may carry; more
    /// is answered 431 `request_header_fields_too_large`.
    pub max_header_bytes: usize,
}

/// The size of a request's header fields as HTTP/1 frames them: `name: value` and a
/// line break, 4 bytes besides the name and the value. The same count on HTTP/2, whose
/// HPACK-decoded list carries the same names and values.
#[must_use]
pub fn header_bytes(headers: &axum::http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Middleware (a [`tower::Layer`] around the whole router): gives the request its trace
/// id, bounds it in time, echoes the id in `X-Request-Id`, logs one debug line per
/// request (route template, status, latency — never the raw path, which may carry ids,
/// or any header) and counts it in the HTTP metrics.
///
/// Hand-written rather than `axum::middleware::from_fn` (which clones the route's boxed
/// service, boxes a `Next` and boxes the future on every request), and around the
/// router rather than on each route (`Router::layer` wraps every route in one more
/// boxed service that is cloned per request): together about a quarter of
/// `GET /health`'s instructions (callgrind, `docs/PERFORMANCE.md`). Outside the router
/// axum's `MatchedPath` is not set yet, so the layer finds the route template itself,
/// with the same matcher (`matchit`) over the same templates the router was built from
/// (see `routes::router`).
#[derive(Clone, Debug)]
pub struct TraceLayer {
    bounds: Bounds,
    routes: Arc<matchit::Router<&'static str>>,
}

impl TraceLayer {
    /// The layer with these bounds, for a router with these route templates.
    pub fn new(bounds: Bounds, templates: &[&'static str]) -> Self {
        let mut routes = matchit::Router::new();
        for t in templates {
            // A template the matcher refuses, the router refuses first (it panics at
            // start-up on a conflicting route).
            let _ = routes.insert(*t, *t);
        }
        TraceLayer {
            bounds,
            routes: Arc::new(routes),
        }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            bounds: self.bounds,
            routes: Arc::clone(&self.routes),
            conn: None,
            peer: None,
        }
    }
}

/// A service (the router) wrapped by [`TraceLayer`].
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
    bounds: Bounds,
    routes: Arc<matchit::Router<&'static str>>,
    /// The connection this copy serves, told of each request in service.
    conn: Option<Arc<crate::conn_watch::ConnWatch>>,
    /// The connection's peer, given to each request as [`crate::rate_limit::ClientAddr`].
    peer: Option<std::net::IpAddr>,
}

impl<S> Traced<S> {
    /// This service for one connection, whose requests `watch` counts (see
    /// [`crate::conn_watch`]).
    #[must_use]
    pub fn watched(mut self, watch: Arc<crate::conn_watch::ConnWatch>) -> Self {
        self.conn = Some(watch);
        self
    }

    /// This service for one connection from `peer`.
    #[must_use]
    pub fn from_peer(mut self, peer: std::net::IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }
}

impl<S, B> tower::Service<axum::http::Request<B>> for Traced<S>
where
    S: tower::Service<
            axum::http::Request<B>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        if let Some(peer) = self.peer {
            req.extensions_mut()
                .insert(crate::rate_limit::ClientAddr(peer));
        }
        let (trace_id, header) = request_trace_id(req.headers());
        let route = self.routes.at(req.uri().path()).ok().map(|m| *m.value);
        let method = req.method().clone();
        // The long poll of events is bounded by its own (capped) `wait`, not by the
        // general request timeout.
        let timeout = if route == Some(LONG_POLL_ROUTE) {
            self.bounds.request.saturating_add(self.bounds.long_poll)
        } else {
            self.bounds.request
        };
        let started = std::time::Instant::now();
        let in_flight = self.conn.as_ref().map(crate::conn_watch::ConnWatch::start);
        // Headers over the bound are refused before the router sees them (hyper's own
        // caps, set above this one in `startup::serve`, bound what is read at all).
        let too_large = header_bytes(req.headers()) > self.bounds.max_header_bytes;
        // `poll_ready` said the inner service is ready: call it now, as `Next` would
        // (an over-size request is dropped unpolled).
        let response = self.inner.call(req);
        let max_header_bytes = self.bounds.max_header_bytes;
        let context = RequestContext {
            trace_id,
            method: method.clone(),
            route,
        };
        Box::pin(async move {
            let mut resp = REQUEST
                .scope(context, async move {
                    if too_large {
                        drop(response);
                        tracing::info!(max_header_bytes, "request headers too large");
                        return ApiError::HeadersTooLarge(max_header_bytes).into_response();
                    }
                    let resp = match (Bounded {
                        inner: std::pin::pin!(response),
                        deadline: started + timeout,
                        timer: None,
                    })
                    .await
                    {
                        Some(Ok(resp)) => resp,
                        Some(Err(never)) => match never {},
                        None => {
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
            record_request(
                route.unwrap_or("unmatched"),
                &method,
                resp.status().as_u16(),
                started.elapsed(),
            );
            if let Some(v) = header {
                resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
            }
            resp.headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
            drop(in_flight);
            Ok(resp)
        })
    }
}

/// `tokio::time::timeout` with the timer made on the first `Pending`: most requests
/// finish in their first poll, and building a timer entry (a 128-byte-aligned
/// allocation and a look-up of the runtime's time driver) for them was a measurable
/// part of `GET /health`. `None` when `deadline` passed first.
struct Bounded<F> {
    inner: F,
    deadline: std::time::Instant,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<F: std::future::Future + Unpin> std::future::Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        if let Poll::Ready(out) = std::pin::Pin::new(&mut self.inner).poll(cx) {
            return Poll::Ready(Some(out));
        }
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The metric handles of one route: its latency histogram and its request counters
/// by method and status.
struct RouteMetrics {
    duration: metrics::Histogram,
    requests: HashMap<(&'static str, u16), metrics::Counter, Fnv>,
}

/// FNV-1a (the `fnv` crate, already under hyper) for the metric handle caches: their
/// keys are route templates, method names and status codes, never client-chosen (an
/// unmatched path is `unmatched`, an unknown method `OTHER`), so flooding is not a
/// concern and SipHash's cost is not needed.
type Fnv = fnv::FnvBuildHasher;

/// The `method` label: the standard methods by name, anything else a client sends as
/// `OTHER`, so a client cannot add series to the recorder without limit.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// Most routes (and method/status pairs per route) a thread keeps handles for; the
/// cache starts over beyond that (routes are templates and methods are mapped to ten
/// labels, so this is never reached in practice).
const MAX_CACHED_METRICS: usize = 256;

thread_local! {
    /// Per worker thread, so recording a request takes no lock and allocates nothing
    /// once a route has been seen: looking a labelled metric up in the recorder
    /// builds its labels (three `String`s) and hashes them, which cost about a tenth
    /// of `/health`.
    static ROUTE_METRICS: RefCell<HashMap<Box<str>, RouteMetrics, Fnv>> = RefCell::new(HashMap::default());
}

/// Records `vivified_http_request_duration_seconds{route}` and
/// `vivified_http_requests_total{route,method,status}` for one request.
fn record_request(route: &str, method: &Method, status: u16, elapsed: std::time::Duration) {
    ROUTE_METRICS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(route) {
            if cache.len() >= MAX_CACHED_METRICS {
                cache.clear();
            }
            let duration = metrics::histogram!(
                "vivified_http_request_duration_seconds",
                "route" => route.to_owned()
            );
            cache.insert(
                route.into(),
                RouteMetrics {
                    duration,
                    requests: HashMap::default(),
                },
            );
        }
        let Some(handles) = cache.get_mut(route) else {
            return;
        };
        handles.duration.record(elapsed.as_secs_f64());
        let key = (method_label(method), status);
        if let Some(counter) = handles.requests.get(&key) {
            counter.increment(1);
            return;
        }
        if handles.requests.len() >= MAX_CACHED_METRICS {
            handles.requests.clear();
        }
        let counter = metrics::counter!(
            "vivified_http_requests_total",
            "route" => route.to_owned(),
            "method" => key.0,
            "status" => status.to_string()
        );
        counter.increment(1);
        handles.requests.insert(key, counter);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A router with a fast and a slow route behind the layer (request timeout 200 ms).
    fn layered() -> axum::Router {
        axum::Router::new()
            .route(
                "/fast/{id}",
                axum::routing::get(|TraceId(id): TraceId| async move { id.to_string() }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route(
                "/yields",
                axum::routing::get(|| async {
                    // Pending once or twice, then done well within the bound.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    "on time"
                }),
            )
    }

    fn layer() -> TraceLayer {
        TraceLayer::new(
            Bounds {
                request: std::time::Duration::from_millis(200),
                long_poll: std::time::Duration::from_secs(60),
                max_header_bytes: 1024,
            },
            &["/fast/{id}", "/slow", "/yields"],
        )
    }

    async fn call(uri: &str, headers: &[(&str, &str)]) -> (Response, String) {
        use tower::ServiceExt;
        let mut req = axum::http::Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tower::Layer::layer(&layer(), layered())
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        (
            Response::from_parts(parts, axum::body::Body::empty()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    /// Header fields up to the bound (1024 bytes here) pass; one byte more is 431 in
    /// the API's error shape, with the trace id, and the handler never runs.
    #[tokio::test]
    async fn header_fields_over_the_bound_are_431() {
        // `x-pad: VALUE\r\n` is 5 + len + 4 bytes; `x-request-id: r-1\r\n` 12 + 3 + 4.
        let at_bound = "v".repeat(1024 - 19 - 9);
        let (resp, body) = call("/fast/1", &[("x-request-id", "r-1"), ("x-pad", &at_bound)]).await;
        assert_eq!((resp.status().as_u16(), body.as_str()), (200, "r-1"));
        let over = format!("{at_bound}v");
        let (resp, body) = call("/fast/1", &[("x-request-id", "r-1"), ("x-pad", &over)]).await;
        assert_eq!(resp.status(), 431, "{body}");
        assert_eq!(resp.headers()["x-request-id"], "r-1");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "request_header_fields_too_large");
        assert_eq!(
            body["detail"],
            "The request's header fields exceed 1024 bytes."
        );
    }

    #[tokio::test]
    async fn the_layer_gives_the_handler_the_echoed_trace_id() {
        let (resp, body) = call("/fast/1", &[("x-request-id", "req-42")]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(body, "req-42");
        assert_eq!(resp.headers()["x-request-id"], "req-42");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        // A fresh one: 32 hex digits, the same in the header and in the handler.
        let (resp, body) = call("/fast/2", &[]).await;
        assert_eq!(body.len(), 32, "{body}");
        assert!(body.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(resp.headers()["x-request-id"], body.as_str());
    }

    #[tokio::test]
    async fn the_layer_labels_a_request_with_the_template_the_router_matched() {
        use tower::ServiceExt;
        let templates = ["/plugins/{id}", "/plugins/{id}/events", "/plugins/register"];
        // Each handler answers "<axum's MatchedPath>|<the layer's route>".
        let both = |m: axum::extract::MatchedPath| async move {
            format!("{}|{}", m.as_str(), REQUEST.with(|r| r.route().to_owned()))
        };
        let router = templates
            .iter()
            .fold(axum::Router::new(), |r, t| {
                r.route(t, axum::routing::get(both))
            })
            .fallback(|| async { REQUEST.with(|r| r.route().to_owned()) });
        let app = tower::Layer::layer(
            &TraceLayer::new(
                Bounds {
                    request: std::time::Duration::from_secs(5),
                    long_poll: std::time::Duration::from_secs(5),
                    max_header_bytes: 16 * 1024,
                },
                &templates,
            ),
            router,
        );
        for (path, want) in [
            ("/plugins/p-1", "/plugins/{id}|/plugins/{id}"),
            ("/plugins/register", "/plugins/register|/plugins/register"),
            (
                "/plugins/p-1/events",
                "/plugins/{id}/events|/plugins/{id}/events",
            ),
            ("/plugins/p-1/other", "-"),
            ("/", "-"),
        ] {
            let resp = app
                .clone()
                .oneshot(
                    axum::http::Request::get(path)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
            assert_eq!(body, want.as_bytes(), "{path}");
        }
    }

    #[tokio::test]
    async fn a_request_past_its_bound_is_answered_503_and_one_within_it_is_not() {
        let started = std::time::Instant::now();
        let (resp, body) = call("/slow", &[]).await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 503, "{body}");
        assert!(body.contains("unavailable"), "{body}");
        assert!(resp.headers().contains_key("x-request-id"));
        assert!(
            took >= std::time::Duration::from_millis(200)
                && took < std::time::Duration::from_secs(10),
            "{took:?}"
        );
        let (resp, body) = call("/yields", &[]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(body, "on time");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let odd = Method::from_bytes(b"FOO1").unwrap();
        let other = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
        assert_eq!(method_label(&other), "OTHER");
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// A JSON line is what `serde_json` writes for the same members as a map (sorted,
    /// compact), inside a request and outside one.
    #[test]
    fn json_lines_as_a_json_map() {
        use tracing_subscriber::layer::SubscriberExt;
        let buf = Buf::default();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(NoFields)
            .with_writer(buf.clone())
            .event_format(Lines { json: true });
        let subscriber = tracing_subscriber::registry().with(layer);
        let context = RequestContext {
            trace_id: Arc::from("abc-1"),
            method: Method::POST,
            route: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(REQUEST.scope(context, async {
                tracing::info!(
                    zeta = 1u64,
                    alpha = "x\"y\n\u{1}é",
                    ratio = 1.5,
                    neg = -3i64,
                    ok = true,
                    shown = %"displayed",
                    debugged = ?"q\"\\\t\u{8}\u{c}\r\u{1f}\u{7f}",
                    nan = f64::NAN,
                    raw = "\u{8}\u{c}\r\t\u{1f}\u{7f}\\/",
                    "hello {} {}",
                    42,
                    "\"quoted\"\n"
                );
            }));
            tracing::warn!("outside");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        for (line, expected) in lines.iter().zip([
            serde_json::json!({
                "fields": {"zeta": 1, "alpha": "x\"y\n\u{1}é", "ratio": 1.5, "neg": -3, "ok": true, "shown": "displayed",
                    "debugged": format!("{:?}", "q\"\\\t\u{8}\u{c}\r\u{1f}\u{7f}"), "nan": null,
                    "raw": "\u{8}\u{c}\r\t\u{1f}\u{7f}\\/"},
                "level": "INFO",
                "message": "hello 42 \"quoted\"\n",
                "request": {"method": "POST", "route": "-"},
                "target": module_path!(),
                "trace_id": "abc-1",
            }),
            serde_json::json!({
                "level": "WARN",
                "message": "outside",
                "target": module_path!(),
                "trace_id": "system",
            }),
        ]) {
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut expected = expected;
            expected["timestamp"] = parsed["timestamp"].clone();
            assert!(
                OffsetDateTime::parse(
                    parsed["timestamp"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339
                )
                .is_ok()
            );
            assert_eq!(*line, expected.to_string());
        }
    }

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
