//! `GET /metrics`: Prometheus text exposition.
//!
//! The domain and the server record through the `metrics` facade; this module installs
//! the Prometheus recorder once per process and renders it. Gauges that describe
//! shared state (plugins by liveness, pending audit entries) are read from the ports
//! at scrape time, so every replica reports the same picture of the shared store.
//! Labels are route templates, reason codes and states — never raw paths, ids or
//! payloads.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use vivified_ports::{Liveness, PluginId};

use crate::state::AppState;

/// Upper bounds (seconds) of the request latency histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// How often recorded histogram samples are drained into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Plugins counted per scrape at most (the count is a page walk of the store).
const MAX_COUNTED_PLUGINS: usize = 100_000;

/// The process's Prometheus recorder, installed on first use. If another recorder
/// was installed first (an embedding program's), ours renders nothing recorded
/// through the facade, and says so once.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets_for_metric(
            Matcher::Full("vivified_http_request_duration_seconds".to_owned()),
            LATENCY_BUCKETS,
        ) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Histograms keep every sample until upkeep drains them into their buckets:
        // without it they grow by a sample per request between scrapes.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("vivified-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics upkeep thread not started; histograms are drained at scrape time only");
        }
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only the scrape-time gauges"
            );
        }
        describe();
        handle
    })
}

/// The `# HELP` text and unit of every metric family the core records (Prometheus's
/// linter, `promtool check metrics`, wants one for each).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "vivified_http_requests_total",
        Unit::Count,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "vivified_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route template"
    );
    describe_counter!(
        "vivified_registrations_total",
        Unit::Count,
        "Plugin registrations, by outcome (accepted or rejected) and reason code"
    );
    describe_counter!(
        "vivified_heartbeats_total",
        Unit::Count,
        "Plugin heartbeats, by outcome"
    );
    describe_counter!(
        "vivified_lifecycle_events_total",
        Unit::Count,
        "Plugin lifecycle events emitted (plugin.registered, plugin.stale, ...), by event type"
    );
    describe_counter!(
        "vivified_events_published_total",
        Unit::Count,
        "Events accepted for publishing"
    );
    describe_counter!(
        "vivified_events_dropped_total",
        Unit::Count,
        "Events dropped from a full per-plugin queue before the plugin pulled them"
    );
    describe_counter!(
        "vivified_policy_decisions_total",
        Unit::Count,
        "Policy decisions on events, by action (publish, deliver), effect and reason code"
    );
    describe_counter!(
        "vivified_audit_appends_total",
        Unit::Count,
        "Audit entries appended, by outcome"
    );
    describe_counter!(
        "vivified_audit_seal_failures_total",
        Unit::Count,
        "Audit seals that sealed nothing because they failed, by reason (unknown_key, behind_checkpoint, unavailable)"
    );
    describe_counter!(
        "vivified_rate_limited_total",
        Unit::Count,
        "Requests refused with 429 because their address used up its allowance, by route"
    );
    describe_gauge!(
        "vivified_audit_pending_entries",
        Unit::Count,
        "Audit entries appended but not yet sealed into the hash chain"
    );
    describe_gauge!(
        "vivified_plugins",
        Unit::Count,
        "Plugins in the shared store, by liveness (registered, active, stale) and disabled"
    );
    describe_counter!(
        "vivified_store_errors_total",
        Unit::Count,
        "Failed calls to the plugin store"
    );
    describe_counter!(
        "vivified_bus_errors_total",
        Unit::Count,
        "Failed calls to the event bus"
    );
}

/// `GET /metrics` (unauthenticated; bind it to a separate address with
/// `VIVIFIED_METRICS_BIND` to keep it off the API listener).
pub async fn render(State(state): State<AppState>) -> Response {
    let handle = handle();
    // Scrape-time gauges of the shared state.
    match count_plugins(&state).await {
        Ok(counts) => {
            for (liveness, n) in counts {
                metrics::gauge!("vivified_plugins", "liveness" => liveness).set(n as f64);
            }
        }
        Err(()) => metrics::counter!("vivified_store_errors_total").increment(1),
    }
    if let Ok(pending) = state.audit.log.pending().await {
        metrics::gauge!("vivified_audit_pending_entries").set(pending as f64);
    }
    handle.run_upkeep();
    let mut resp = (StatusCode::OK, handle.render()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn count_plugins(state: &AppState) -> Result<[(&'static str, u64); 4], ()> {
    let store = state.registry.store();
    let (mut registered, mut active, mut stale, mut disabled) = (0u64, 0u64, 0u64, 0u64);
    let mut after: Option<PluginId> = None;
    let mut seen = 0usize;
    loop {
        let page = store.list(after.take(), 500).await.map_err(|_| ())?;
        for r in &page {
            if !r.enabled {
                disabled += 1;
            }
            match r.status {
                Liveness::Registered => registered += 1,
                Liveness::Active => active += 1,
                Liveness::Stale => stale += 1,
            }
        }
        seen += page.len();
        if page.len() < 500 || seen >= MAX_COUNTED_PLUGINS {
            break;
        }
        after = page.last().map(|r| r.plugin_id.clone());
    }
    Ok([
        ("registered", registered),
        ("active", active),
        ("stale", stale),
        ("disabled", disabled),
    ])
}
