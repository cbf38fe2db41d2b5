//! Logging: structured (JSON by default) to stdout, one trace id on every line.
//!
//! Request lines carry the request's `trace_id` through the `request` span; start-up and
//! shutdown lines run inside a `system` span whose `trace_id` is `system`. Nothing here
//! ever records a header value, a body, a token or a secret.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
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
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Pretty => builder.with_ansi(false).try_init().is_ok(),
    }
}

/// The span for start-up, shutdown and background work.
pub fn system_span() -> tracing::Span {
    tracing::info_span!("system", trace_id = "system")
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
    uuid::Uuid::new_v4().simple().to_string()
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

/// Middleware: gives the request its trace id and span, bounds it in time, echoes the
/// id in `X-Request-Id`, and logs one debug line per request (route template, status,
/// latency — never the raw path, which may carry ids, or any header).
pub async fn trace_and_timeout(
    axum::extract::State(timeout): axum::extract::State<std::time::Duration>,
    mut req: Request,
    next: Next,
) -> Response {
    let trace_id = trace_id(req.headers());
    req.extensions_mut().insert(TraceId(trace_id.clone()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("-", |p| p.as_str())
        .to_owned();
    let method = req.method().clone();
    let span =
        tracing::info_span!("request", trace_id = %trace_id, method = %method, route = %route);
    let started = std::time::Instant::now();
    let mut resp = async move {
        match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => {
                tracing::warn!("request timed out");
                ApiError::Unavailable("request timed out").into_response()
            }
        }
    }
    .instrument(span.clone())
    .await;
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            "request completed"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
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
