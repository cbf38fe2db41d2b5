//! CORS: only the exact origins in `ALLOWED_ORIGINS`, never `*`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use vivified_server::Settings;

use crate::helpers::{ADMIN_TOKEN, TestApp, TestResponse};

const APP_ORIGIN: &str = "https://app.example.com";

fn cors_app() -> TestApp {
    TestApp::builder()
        .env("ALLOWED_ORIGINS", APP_ORIGIN)
        .build()
}

async fn preflight(app: &TestApp, origin: &str, method: &str) -> TestResponse {
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/plugins/register")
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .body(Body::empty())
        .expect("request");
    app.send(req).await
}

fn never_wildcard(resp: &TestResponse) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-methods",
    ] {
        assert_ne!(resp.header(name).as_deref(), Some("*"), "{name}");
    }
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_allowed() {
    let app = cors_app();
    let resp = preflight(&app, APP_ORIGIN, "POST").await;
    assert!(resp.status.is_success(), "{}", resp.status);
    assert_eq!(
        resp.header("access-control-allow-origin").as_deref(),
        Some(APP_ORIGIN)
    );
    assert_eq!(
        resp.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let methods = resp
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = resp
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    never_wildcard(&resp);
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_allow_origin() {
    let app = cors_app();
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com.evil.net",
        "https://sub.app.example.com",
        "null",
    ] {
        let resp = preflight(&app, origin, "POST").await;
        assert!(
            resp.header("access-control-allow-origin").is_none(),
            "{origin} must not be allowed"
        );
        never_wildcard(&resp);
    }
}

#[tokio::test]
async fn simple_requests_carry_cors_headers_only_for_the_allowed_origin() {
    let app = cors_app();
    let get = |origin: &'static str| {
        Request::get("/plugins")
            .header("origin", origin)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .expect("request")
    };
    let resp = app.send(get(APP_ORIGIN)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("access-control-allow-origin").as_deref(),
        Some(APP_ORIGIN)
    );
    let exposed = resp
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    never_wildcard(&resp);
    let resp = app.send(get("https://evil.example.com")).await;
    assert!(resp.header("access-control-allow-origin").is_none());
    never_wildcard(&resp);
}

#[tokio::test]
async fn without_allowed_origins_there_is_no_cors_at_all() {
    let app = TestApp::dev();
    let resp = preflight(&app, APP_ORIGIN, "POST").await;
    assert!(resp.header("access-control-allow-origin").is_none());
    never_wildcard(&resp);
    let req = Request::get("/health")
        .header("origin", APP_ORIGIN)
        .body(Body::empty())
        .expect("request");
    let resp = app.send(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.header("access-control-allow-origin").is_none());
}

#[test]
fn a_wildcard_origin_is_refused_at_start_up() {
    for origins in ["*", "https://app.example.com,*", "app.example.com"] {
        let env: BTreeMap<&str, &str> = [("ALLOWED_ORIGINS", origins)].into();
        let err = Settings::load(None, |k| env.get(k).map(|v| (*v).to_owned()), None)
            .expect_err(origins)
            .to_string();
        assert!(err.contains("ALLOWED_ORIGINS"), "{err}");
    }
}
