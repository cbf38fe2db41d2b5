//! `GET /health` and `GET /ready`.

use axum::http::StatusCode;

use crate::helpers::{TestApp, keys, rfc3339_utc, sorted};

#[tokio::test]
async fn health_reports_status_timestamp_and_version_only() {
    let app = TestApp::dev();
    let resp = app.get("/health", None).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let body = resp.json();
    assert_eq!(
        keys(&body),
        sorted(&["status", "timestamp", "version"]),
        "nothing sensitive, no dependency details: {body}"
    );
    assert_eq!(body["status"], "healthy");
    let at = rfc3339_utc(&body["timestamp"]);
    let drift = (time::OffsetDateTime::now_utc() - at).abs();
    assert!(drift < time::Duration::minutes(1), "timestamp is now: {at}");
    assert!(
        body["version"].as_str().is_some_and(|v| !v.is_empty()),
        "version: {body}"
    );
}

#[tokio::test]
async fn health_needs_no_credential_and_ignores_a_bad_one() {
    let app = TestApp::dev();
    let resp = app.get("/health", Some("not-a-token-at-all-xyz")).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn health_in_production_mode_too() {
    let app = TestApp::production();
    let resp = app.get("/health", None).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["status"], "healthy");
}

#[tokio::test]
async fn ready_is_200_json_when_the_store_answers() {
    let app = TestApp::dev();
    let resp = app.get("/ready", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let body = resp.json();
    assert!(body.is_object(), "{body}");
    assert_ne!(body["status"], "unavailable");
}
