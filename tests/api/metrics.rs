//! `GET /metrics`: Prometheus text, unauthenticated, labelled by route templates and
//! codes (never raw paths or ids), covering HTTP, registrations, heartbeats, policy
//! decisions, events, audit appends and plugins by liveness.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn metrics_cover_the_core_and_never_carry_ids() {
    let app = TestApp::dev();
    let mut m = crate::helpers::manifest("metrics-sub-7f3a");
    m["subscriptions"] = json!(["metrics.*"]);
    let resp = app.register(&m, None).await;
    assert_eq!(resp.status, StatusCode::OK);
    let token = app.register_ok("metrics-pub-9c1d").await;
    let resp = app
        .post_json(
            "/events",
            Some(&token),
            &json!({"event_type": "metrics.ping", "payload": {}}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    let resp = app
        .heartbeat(
            "metrics-pub-9c1d",
            Some(&token),
            Some(&json!({"health": "healthy"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let _ = app.get("/plugins/no-such-plugin-4e2b", Some(&token)).await;
    let _ = app.get("/definitely/not/a/route-8d8d", None).await;

    let resp = app.get("/metrics", None).await;
    assert_eq!(resp.status, StatusCode::OK, "unauthenticated by default");
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        resp.header("content-type")
    );
    let text = resp.text();
    for needle in [
        "vivified_http_requests_total{",
        "route=\"/plugins/register\"",
        "route=\"unmatched\"",
        "vivified_http_request_duration_seconds_bucket{",
        "vivified_registrations_total{outcome=\"accepted\",reason=\"registered\"}",
        "vivified_heartbeats_total{outcome=\"accepted\"}",
        "vivified_policy_decisions_total{action=\"deliver\",effect=\"allow\",reason=\"internal_data\"}",
        "vivified_events_published_total",
        "vivified_audit_appends_total{outcome=\"ok\"}",
        "vivified_lifecycle_events_total{event=\"plugin.registered\"}",
        "vivified_plugins{liveness=\"registered\"}",
        "vivified_plugins{liveness=\"active\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    for id in [
        "metrics-sub-7f3a",
        "metrics-pub-9c1d",
        "no-such-plugin-4e2b",
        "route-8d8d",
    ] {
        assert!(!text.contains(id), "an id or raw path in the metrics: {id}");
    }
}

#[tokio::test]
async fn with_a_separate_address_the_api_listener_does_not_serve_metrics() {
    let app = TestApp::builder()
        .env("VIVIFIED_METRICS_BIND", "127.0.0.1:0")
        .build();
    assert_eq!(
        app.get("/metrics", None).await.status,
        StatusCode::NOT_FOUND
    );
}
