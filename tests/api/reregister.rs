//! Re-registration: with the plugin's current token (also expired within the grace),
//! never with a stale, forged or foreign credential.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{
    JWT_SECRET, OTHER_JWT_SECRET, REGISTRATION_SECRET, TOKEN_FIELDS, TestApp, assert_error, keys,
    manifest, rfc3339_utc, sorted,
};

#[tokio::test]
async fn reregistration_rotates_the_token_keeps_registered_at_and_replaces_the_manifest() {
    let app = TestApp::dev();
    let old = app.register_ok("rereg").await;
    let first = app.record("rereg").await;
    app.clock.advance(time::Duration::minutes(5));

    let mut next = manifest("rereg");
    next["version"] = json!("2.0.0");
    next["name"] = json!("Re-registered");
    let resp = app.register(&next, Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let body = resp.json();
    assert_eq!(keys(&body), sorted(TOKEN_FIELDS));
    assert_eq!(body["plugin_id"], "rereg");
    let new = resp.token();
    assert_ne!(new, old, "the token rotates");

    let record = app.record("rereg").await;
    assert_eq!(
        record["registered_at"], first["registered_at"],
        "registered_at is kept"
    );
    assert_eq!(record["manifest"], next, "the manifest is replaced");

    let resp = app.heartbeat("rereg", Some(&old), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.heartbeat("rereg", Some(&new), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn an_expired_token_whose_jti_is_current_reregisters_within_the_grace() {
    let app = TestApp::builder()
        .env("VIVIFIED_TOKEN_TTL", "1s")
        .env("VIVIFIED_REREGISTER_GRACE", "1h")
        .build();
    let old = app.register_ok("sleeper").await;
    app.clock.advance(time::Duration::minutes(10));
    // Expired for every ordinary use …
    let resp = app.heartbeat("sleeper", Some(&old), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    // … but it can still bring its plugin back.
    let now = vivified_ports::Clock::now(&*app.clock);
    let resp = app.register(&manifest("sleeper"), Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let expires_at = rfc3339_utc(&resp.json()["expires_at"]);
    assert!(expires_at > now, "the new token is valid from now");
    let new = resp.token();
    let resp = app.heartbeat("sleeper", Some(&new), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn an_expired_token_past_the_grace_is_401() {
    let app = TestApp::builder()
        .env("VIVIFIED_TOKEN_TTL", "1s")
        .env("VIVIFIED_REREGISTER_GRACE", "1m")
        .build();
    let old = app.register_ok("too-late").await;
    app.clock.advance(time::Duration::minutes(10));
    let resp = app.register(&manifest("too-late"), Some(&old)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_default_grace_is_seven_days() {
    let app = TestApp::builder().env("VIVIFIED_TOKEN_TTL", "1h").build();
    let t1 = app.register_ok("weekly").await;
    app.clock.advance(time::Duration::days(6));
    let resp = app.register(&manifest("weekly"), Some(&t1)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let t2 = resp.token();
    app.clock.advance(time::Duration::days(8));
    let resp = app.register(&manifest("weekly"), Some(&t2)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_revoked_token_does_not_reregister() {
    let app = TestApp::dev();
    let old = app.register_ok("revoked").await;
    let resp = app.refresh("revoked", Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let resp = app.register(&manifest("revoked"), Some(&old)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_forged_or_garbage_token_does_not_reregister() {
    let app = TestApp::dev();
    app.register_ok("target").await;
    let now = vivified_ports::Clock::now(&*app.clock);
    let wrong_key = app.forge_with(OTHER_JWT_SECRET, "target", now).await;
    let resp = app.register(&manifest("target"), Some(&wrong_key)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    // Correctly signed, but not the plugin's current jti.
    let stale_jti = app.forge_with(JWT_SECRET, "target", now).await;
    let resp = app.register(&manifest("target"), Some(&stale_jti)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .register(&manifest("target"), Some("garbage-garbage-garbage"))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn an_invalid_manifest_with_the_current_token_changes_nothing() {
    let app = TestApp::dev();
    let token = app.register_ok("keep-me").await;
    let before = app.record("keep-me").await;
    let mut bad = manifest("keep-me");
    bad["version"] = json!("two");
    let resp = app.register(&bad, Some(&token)).await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
    assert_eq!(app.record("keep-me").await, before);
    let resp = app.heartbeat("keep-me", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "the token still works");
}

#[tokio::test]
async fn the_registration_secret_never_reregisters_a_held_id_in_dev_mode() {
    let app = TestApp::builder()
        .env("VIVIFIED_REGISTRATION_SECRET", REGISTRATION_SECRET)
        .build();
    app.register_ok("held").await;
    let resp = app
        .register(&manifest("held"), Some(REGISTRATION_SECRET))
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
}
