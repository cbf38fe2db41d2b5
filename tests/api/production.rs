//! Production mode: a new id needs the registration secret; a held id needs its token.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, REGISTRATION_SECRET, TestApp, assert_error, manifest};

#[tokio::test]
async fn a_new_id_without_the_registration_secret_is_401() {
    let app = TestApp::production();
    let resp = app.register(&manifest("prod-new"), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    for wrong in [
        "reg-test-wrong-secret-000000",
        ADMIN_TOKEN,
        &REGISTRATION_SECRET[..REGISTRATION_SECRET.len() - 1],
    ] {
        let resp = app.register(&manifest("prod-new"), Some(wrong)).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Another scheme is no credential.
    let req = axum::http::Request::post("/plugins/register")
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {REGISTRATION_SECRET}"))
        .body(axum::body::Body::from(
            serde_json::to_vec(&manifest("prod-new")).expect("json"),
        ))
        .expect("request");
    let resp = app.send(req).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins/prod-new", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_new_id_with_the_registration_secret_is_200() {
    let app = TestApp::production();
    let resp = app
        .register(&manifest("prod-ok"), Some(REGISTRATION_SECRET))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["status"], "registered");
    assert_eq!(body["plugin_id"], "prod-ok");
    let token = resp.token();
    let resp = app.heartbeat("prod-ok", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn an_invalid_manifest_needs_the_secret_before_it_is_validated() {
    let app = TestApp::production();
    let mut bad = manifest("prod-bad");
    bad["version"] = json!("x");
    let resp = app.register(&bad, None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.register(&bad, Some(REGISTRATION_SECRET)).await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
}

#[tokio::test]
async fn the_registration_secret_never_reregisters_a_held_id() {
    let app = TestApp::production();
    let resp = app
        .register(&manifest("prod-held"), Some(REGISTRATION_SECRET))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let token = resp.token();
    let resp = app
        .register(&manifest("prod-held"), Some(REGISTRATION_SECRET))
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    let resp = app.register(&manifest("prod-held"), None).await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    // The holder's token is untouched.
    let resp = app.heartbeat("prod-held", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn reregistration_with_the_current_token_works_in_production() {
    let app = TestApp::builder()
        .production()
        .env("VIVIFIED_TOKEN_TTL", "1m")
        .build();
    let resp = app
        .register(&manifest("prod-rereg"), Some(REGISTRATION_SECRET))
        .await;
    let old = resp.token();
    let mut next = manifest("prod-rereg");
    next["version"] = json!("1.1.0");
    let resp = app.register(&next, Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let new = resp.token();
    assert_ne!(new, old);
    // Expired but current, within the default grace.
    app.clock.advance(time::Duration::hours(2));
    let resp = app.register(&next, Some(&new)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let resp = app.heartbeat("prod-rereg", Some(&old), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}
