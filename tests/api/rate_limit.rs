//! Registration and enrollment are rate-limited per client address: 429 `rate_limited`
//! with `Retry-After`, before the body is read, not audited; other routes and other
//! addresses are not affected.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;
use vivified_server::rate_limit::ClientAddr;

use crate::helpers::{ADMIN_TOKEN, TestApp, TestResponse, assert_error, manifest};

async fn post_from(
    app: &TestApp,
    from: [u8; 4],
    uri: &str,
    bearer: Option<&str>,
    body: &str,
) -> TestResponse {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(b) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {b}"));
    }
    let mut req = req.body(Body::from(body.to_owned())).unwrap();
    req.extensions_mut().insert(ClientAddr(IpAddr::from(from)));
    app.send(req).await
}

fn limited(resp: &TestResponse) -> u64 {
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let secs: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    assert_eq!(resp.json()["retry_after_secs"], secs);
    secs
}

#[tokio::test]
async fn each_address_gets_its_allowance_of_registrations_and_enrollments() {
    let app = TestApp::builder()
        .env("VIVIFIED_REGISTRATION_RATE_LIMIT", "3")
        .build();
    let a = [192, 0, 2, 1];
    let m = |id: &str| manifest(id).to_string();
    // Successes, refusals and enrollments all draw on one allowance.
    let ok = post_from(&app, a, "/plugins/register", None, &m("first")).await;
    assert_eq!(ok.status, StatusCode::OK);
    let token = ok.token();
    let bad = post_from(&app, a, "/plugins/register", None, "{\"id\": 7}").await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_manifest");
    let enrolled = post_from(
        &app,
        a,
        "/enrollments",
        Some(ADMIN_TOKEN),
        &json!({"plugin_id": "second"}).to_string(),
    )
    .await;
    assert_eq!(enrolled.status, StatusCode::CREATED);
    let entries = || async {
        app.audit.log.range(1, 10_000).await.unwrap().len() as u64
            + app.audit.log.pending().await.unwrap()
    };
    let entries_before = entries().await;

    // The fourth is refused before its body is looked at, and not audited.
    limited(&post_from(&app, a, "/plugins/register", None, &m("third")).await);
    limited(&post_from(&app, a, "/plugins/register", None, "not json").await);
    limited(
        &post_from(
            &app,
            a,
            "/enrollments",
            Some(ADMIN_TOKEN),
            &json!({"plugin_id": "x"}).to_string(),
        )
        .await,
    );
    assert_eq!(entries().await, entries_before, "a 429 is not audited");

    // Another address, and the other routes, are not affected.
    let other = post_from(&app, [192, 0, 2, 2], "/plugins/register", None, &m("third")).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(
        app.heartbeat("first", Some(&token), None).await.status,
        StatusCode::OK
    );
    // In-process callers (no address) are never limited.
    let resp = app.register(&manifest("fourth"), None).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn production_limits_by_default_and_dev_does_not() {
    let prod = TestApp::production();
    assert_eq!(
        prod.settings.registration_rate_limit,
        vivified_server::settings::DEFAULT_REGISTRATION_RATE_LIMIT
    );
    let dev = TestApp::dev();
    assert_eq!(dev.settings.registration_rate_limit, 0);
    for _ in 0..50 {
        let resp = post_from(&dev, [192, 0, 2, 9], "/plugins/register", None, "{}").await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
    }
}
