//! Body limits and content types: 413 over the limit, 415 for a non-empty non-JSON body.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, manifest};

/// `manifest(id)` with an unknown member padding it to exactly `len` bytes.
fn padded(id: &str, len: usize) -> Vec<u8> {
    let mut m = manifest(id);
    m["padding"] = json!("");
    let base = serde_json::to_vec(&m).expect("json").len();
    assert!(len >= base);
    m["padding"] = Value::String("a".repeat(len - base));
    let bytes = serde_json::to_vec(&m).expect("json");
    assert_eq!(bytes.len(), len);
    bytes
}

fn post(uri: &str, body: Vec<u8>, with_length: bool) -> Request<Body> {
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if with_length {
        req = req.header(header::CONTENT_LENGTH, body.len());
    }
    req.body(Body::from(body)).expect("request")
}

#[tokio::test]
async fn over_the_configured_limit_is_413_with_or_without_content_length() {
    let app = TestApp::builder()
        .env("VIVIFIED_MAX_BODY_BYTES", "2048")
        .build();
    for with_length in [true, false] {
        let resp = app
            .send(post("/plugins/register", padded("big", 2049), with_length))
            .await;
        assert_error(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        let resp = app
            .send(post(
                "/plugins/register",
                padded("big", 10_000),
                with_length,
            ))
            .await;
        assert_error(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    // Exactly at the limit is fine.
    let resp = app
        .send(post("/plugins/register", padded("fits", 2048), true))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_reading() {
    let app = TestApp::builder()
        .env("VIVIFIED_MAX_BODY_BYTES", "2048")
        .build();
    let req = Request::post("/plugins/register")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "1000000000")
        .body(Body::empty())
        .expect("request");
    let resp = app.send(req).await;
    assert_error(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn over_the_64_kib_default_is_413() {
    let app = TestApp::dev();
    assert_eq!(app.settings.max_body_bytes, 64 * 1024);
    for with_length in [true, false] {
        let resp = app
            .send(post(
                "/plugins/register",
                padded("huge", 64 * 1024 + 1),
                with_length,
            ))
            .await;
        assert_error(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    let resp = app
        .send(post("/plugins/register", padded("large", 64 * 1024), true))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn heartbeat_bodies_are_limited_too() {
    let app = TestApp::builder()
        .env("VIVIFIED_MAX_BODY_BYTES", "2048")
        .build();
    let token = app.register_ok("hb-big").await;
    let body =
        serde_json::to_vec(&json!({ "health": "healthy", "x": "a".repeat(3000) })).expect("json");
    let req = Request::post("/plugins/hb-big/heartbeat")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body))
        .expect("request");
    let resp = app.send(req).await;
    assert_error(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn a_non_json_content_type_with_a_body_is_415() {
    let app = TestApp::dev();
    let body = serde_json::to_vec(&manifest("typed")).expect("json");
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let resp = app
            .post_raw("/plugins/register", None, ct, body.clone())
            .await;
        assert_error(
            &resp,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }
    let resp = app
        .get("/plugins/typed", Some(crate::helpers::ADMIN_TOKEN))
        .await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_heartbeat_body_that_is_not_json_is_415() {
    let app = TestApp::dev();
    let token = app.register_ok("hb-typed").await;
    let resp = app
        .post_raw(
            "/plugins/hb-typed/heartbeat",
            Some(&token),
            Some("text/plain"),
            "{\"health\":\"healthy\"}",
        )
        .await;
    assert_error(
        &resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}
