//! `GET /plugins/{id}`: the admin or the plugin itself; the record's exact shape.

use axum::http::StatusCode;

use crate::helpers::{
    ADMIN_TOKEN, RECORD_FIELDS, TestApp, assert_error, assert_record_shape, keys, manifest, sorted,
};

#[tokio::test]
async fn the_admin_reads_a_record_with_exactly_the_documented_members() {
    let app = TestApp::dev();
    let token = app.register_ok("shape").await;
    let record = app.record("shape").await;
    assert_eq!(keys(&record), sorted(RECORD_FIELDS), "{record}");
    assert_record_shape(&record);
    for secret_ish in ["token", "token_jti", "jti", "version"] {
        assert!(record.get(secret_ish).is_none(), "{secret_ish} in {record}");
    }
    assert_eq!(record["plugin_id"], "shape");
    assert_eq!(record["manifest"], manifest("shape"));
    assert_eq!(record["status"], "registered");
    assert_eq!(record["health"], "unknown");
    assert_eq!(record["enabled"], true);
    assert!(record["disabled_reason"].is_null());
    assert!(record["last_heartbeat"].is_null());
    let stored = app.stored("shape").await;
    assert!(
        !record.to_string().contains(&stored.instances[0].token_jti),
        "the jti never leaves the store"
    );
    let _ = token;
}

#[tokio::test]
async fn a_plugin_reads_its_own_record() {
    let app = TestApp::dev();
    let token = app.register_ok("self-reader").await;
    app.heartbeat("self-reader", Some(&token), None).await;
    let resp = app.get("/plugins/self-reader", Some(&token)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let own = resp.json();
    assert_record_shape(&own);
    assert_eq!(own, app.record("self-reader").await);
    assert_eq!(own["status"], "active");
    assert_eq!(own["health"], "healthy");
}

#[tokio::test]
async fn another_plugins_token_is_403() {
    let app = TestApp::dev();
    app.register_ok("private").await;
    let other = app.register_ok("snoop").await;
    let resp = app.get("/plugins/private", Some(&other)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn the_admin_gets_404_for_an_unknown_id() {
    let app = TestApp::dev();
    for id in ["nobody", "Not_An_Id", &"x".repeat(64)] {
        let resp = app.get(&format!("/plugins/{id}"), Some(ADMIN_TOKEN)).await;
        assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn missing_invalid_expired_or_revoked_credentials_are_401() {
    let app = TestApp::builder().env("VIVIFIED_TOKEN_TTL", "1m").build();
    let first = app.register_ok("guarded").await;
    let resp = app.get("/plugins/guarded", None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .get("/plugins/guarded", Some("garbage-garbage-garbage"))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let second = app.refresh("guarded", Some(&first)).await.token();
    let resp = app.get("/plugins/guarded", Some(&first)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    app.clock.advance(time::Duration::minutes(2));
    let resp = app.get("/plugins/guarded", Some(&second)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_disabled_plugin_still_reads_its_record() {
    let app = TestApp::dev();
    let token = app.register_ok("paused").await;
    app.disable("paused", "too noisy").await;
    let resp = app.get("/plugins/paused", Some(&token)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let record = resp.json();
    assert_record_shape(&record);
    assert_eq!(record["enabled"], false);
    assert_eq!(record["disabled_reason"], "too noisy");
}
