//! Trace ids: `traceparent` wins, then a well-formed `X-Request-Id`, else a fresh one;
//! always echoed in the response's `X-Request-Id`.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::helpers::{TestApp, TestResponse};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn get_with(app: &TestApp, uri: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::empty()).expect("request")).await
}

fn echoed(resp: &TestResponse) -> String {
    resp.header("x-request-id")
        .expect("every response carries X-Request-Id")
}

fn is_generated(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[tokio::test]
async fn a_valid_request_id_is_echoed() {
    let app = TestApp::dev();
    let long_ok = "a".repeat(128);
    for id in ["abc-123", "req_1.2:3-x", long_ok.as_str()] {
        let resp = get_with(&app, "/health", &[("x-request-id", id)]).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(echoed(&resp), id);
    }
}

#[tokio::test]
async fn an_invalid_request_id_is_replaced() {
    let app = TestApp::dev();
    let too_long = "a".repeat(129);
    for id in [
        "has spaces",
        "semi;colon",
        "quote\"d",
        "{braces}",
        too_long.as_str(),
    ] {
        let resp = get_with(&app, "/health", &[("x-request-id", id)]).await;
        let got = echoed(&resp);
        assert_ne!(got, id);
        assert!(is_generated(&got), "a fresh, well-formed id: {got:?}");
    }
}

#[tokio::test]
async fn a_missing_request_id_is_generated_and_unique() {
    let app = TestApp::dev();
    let a = echoed(&get_with(&app, "/health", &[]).await);
    let b = echoed(&get_with(&app, "/health", &[]).await);
    assert!(is_generated(&a) && is_generated(&b), "{a} {b}");
    assert_ne!(a, b);
}

#[tokio::test]
async fn traceparent_wins_over_request_id() {
    let app = TestApp::dev();
    let resp = get_with(
        &app,
        "/health",
        &[("traceparent", TRACEPARENT), ("x-request-id", "abc-123")],
    )
    .await;
    assert_eq!(echoed(&resp), "4bf92f3577b34da6a3ce929d0e0e4736");
    let resp = get_with(&app, "/health", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(echoed(&resp), "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[tokio::test]
async fn an_invalid_traceparent_falls_back_to_the_request_id() {
    let app = TestApp::dev();
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "garbage",
    ] {
        let resp = get_with(
            &app,
            "/health",
            &[("traceparent", bad), ("x-request-id", "fallback-1")],
        )
        .await;
        assert_eq!(echoed(&resp), "fallback-1", "{bad}");
    }
}

#[tokio::test]
async fn errors_echo_the_request_id_too() {
    let app = TestApp::dev();
    for uri in ["/nowhere", "/plugins"] {
        let resp = get_with(&app, uri, &[("x-request-id", "err-42")]).await;
        assert!(resp.status.is_client_error());
        assert_eq!(echoed(&resp), "err-42");
    }
    let req = Request::post("/plugins/register")
        .header("x-request-id", "err-43")
        .header("content-type", "application/json")
        .body(Body::from("{broken"))
        .expect("request");
    let resp = app.send(req).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(echoed(&resp), "err-43");
}
