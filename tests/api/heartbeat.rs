//! `POST /plugins/{id}/heartbeat`: body handling, liveness, and every refusal.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, JWT_SECRET, OTHER_JWT_SECRET, TestApp, assert_error, manifest, rfc3339_utc,
};

#[tokio::test]
async fn a_heartbeat_without_a_body_is_200_ok_and_marks_the_plugin_active_and_healthy() {
    let app = TestApp::dev();
    let token = app.register_ok("beat").await;
    app.clock.advance(time::Duration::seconds(3));
    let now = vivified_ports::Clock::now(&*app.clock);
    let resp = app.heartbeat("beat", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json(), json!({ "status": "ok" }));
    let record = app.record("beat").await;
    assert_eq!(record["status"], "active");
    assert_eq!(record["health"], "healthy");
    assert_eq!(rfc3339_utc(&record["last_heartbeat"]), now);
}

#[tokio::test]
async fn the_reported_health_is_recorded() {
    let app = TestApp::dev();
    let token = app.register_ok("moody").await;
    for health in ["degraded", "unhealthy", "healthy"] {
        let body = json!({ "health": health, "details": { "queue": 3 } });
        let resp = app.heartbeat("moody", Some(&token), Some(&body)).await;
        assert_eq!(resp.status, StatusCode::OK, "{health}: {}", resp.text());
        assert_eq!(resp.json(), json!({ "status": "ok" }));
        assert_eq!(app.record("moody").await["health"], health);
    }
}

#[tokio::test]
async fn a_missing_health_means_healthy_and_unknown_members_are_ignored() {
    let app = TestApp::dev();
    let token = app.register_ok("terse").await;
    let degrade = json!({ "health": "degraded" });
    for body in [
        json!({}),
        json!({ "details": { "uptime": 12 } }),
        json!({ "status": "whatever", "extra": [1, 2, 3], "nested": { "a": null } }),
    ] {
        let resp = app.heartbeat("terse", Some(&token), Some(&degrade)).await;
        assert_eq!(resp.status, StatusCode::OK);
        let resp = app.heartbeat("terse", Some(&token), Some(&body)).await;
        assert_eq!(resp.status, StatusCode::OK, "{body}: {}", resp.text());
        assert_eq!(app.record("terse").await["health"], "healthy", "{body}");
    }
    let body = json!({ "health": "unhealthy", "version": "9.9.9", "pid": 42 });
    let resp = app.heartbeat("terse", Some(&token), Some(&body)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app.record("terse").await["health"], "unhealthy");
}

#[tokio::test]
async fn an_empty_body_is_accepted_whatever_its_content_type() {
    let app = TestApp::dev();
    let token = app.register_ok("empty").await;
    for ct in [Some("application/json"), Some("text/plain"), None] {
        let resp = app
            .post_raw("/plugins/empty/heartbeat", Some(&token), ct, "")
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{ct:?}: {}", resp.text());
        assert_eq!(resp.json(), json!({ "status": "ok" }));
    }
}

#[tokio::test]
async fn details_up_to_4_kib_are_accepted_and_larger_ones_are_400() {
    let app = TestApp::dev();
    let token = app.register_ok("chatty").await;
    let small = json!({ "health": "healthy", "details": { "log": "a".repeat(4000) } });
    let resp = app.heartbeat("chatty", Some(&token), Some(&small)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    let degrade = json!({ "health": "degraded" });
    app.heartbeat("chatty", Some(&token), Some(&degrade)).await;
    let big = json!({ "health": "healthy", "details": { "log": "a".repeat(5000) } });
    let resp = app.heartbeat("chatty", Some(&token), Some(&big)).await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    assert!(
        !resp.text().contains("aaaaaaaa"),
        "details are never echoed"
    );
    assert_eq!(
        app.record("chatty").await["health"],
        "degraded",
        "a refused heartbeat records nothing"
    );
}

#[tokio::test]
async fn a_bad_heartbeat_body_is_400_invalid_body() {
    let app = TestApp::dev();
    let token = app.register_ok("sloppy").await;
    let bodies: Vec<Value> = vec![
        json!({ "health": "sick" }),
        json!({ "health": "HEALTHY" }),
        json!({ "health": "unknown" }),
        json!({ "health": 1 }),
        json!({ "health": ["healthy"] }),
        json!({ "details": "all good" }),
        json!({ "details": [1, 2] }),
        json!([{ "health": "healthy" }]),
        json!("healthy"),
        json!(null),
    ];
    for body in bodies {
        let resp = app.heartbeat("sloppy", Some(&token), Some(&body)).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
    for raw in ["{\"health\": ", "health=healthy", "{'health': 'healthy'}"] {
        let resp = app
            .post_raw(
                "/plugins/sloppy/heartbeat",
                Some(&token),
                Some("application/json"),
                raw,
            )
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
    assert_eq!(
        app.record("sloppy").await["status"],
        "registered",
        "no refused heartbeat counted"
    );
}

#[tokio::test]
async fn missing_garbage_or_foreign_scheme_credentials_are_401() {
    let app = TestApp::dev();
    app.register_ok("locked").await;
    let resp = app.heartbeat("locked", None, None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    for garbage in [
        "garbage-token-garbage-token",
        "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJlLW5vdC12YWxpZA",
    ] {
        let resp = app.heartbeat("locked", Some(garbage), None).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let req = axum::http::Request::post("/plugins/locked/heartbeat")
        .header("authorization", "Basic dXNlcjpwYXNzd29yZA==")
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = app.send(req).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_401() {
    let app = TestApp::dev();
    app.register_ok("keyed").await;
    let now = vivified_ports::Clock::now(&*app.clock);
    let forged = app.forge_with(OTHER_JWT_SECRET, "keyed", now).await;
    let resp = app.heartbeat("keyed", Some(&forged), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let app = TestApp::builder().env("VIVIFIED_TOKEN_TTL", "1s").build();
    let token = app.register_ok("mortal").await;
    let resp = app.heartbeat("mortal", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "fresh: {}", resp.text());
    // Past the expiry and the 5 s leeway.
    app.clock.advance(time::Duration::seconds(10));
    let resp = app.heartbeat("mortal", Some(&token), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let www = resp.header("www-authenticate").unwrap_or_default();
    assert!(www.contains("invalid_token"), "{www}");
}

#[tokio::test]
async fn a_crafted_token_issued_long_ago_is_401() {
    let app = TestApp::dev();
    app.register_ok("ancient").await;
    let long_ago = vivified_ports::Clock::now(&*app.clock) - time::Duration::days(3);
    let old = app.forge_with(JWT_SECRET, "ancient", long_ago).await;
    let resp = app.heartbeat("ancient", Some(&old), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_revoked_token_is_401() {
    let app = TestApp::dev();
    let first = app.register_ok("rotating").await;
    // Refresh revokes …
    let resp = app.refresh("rotating", Some(&first)).await;
    assert_eq!(resp.status, StatusCode::OK);
    let second = resp.token();
    let resp = app.heartbeat("rotating", Some(&first), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    // … so does re-registration …
    let resp = app.register(&manifest("rotating"), Some(&second)).await;
    assert_eq!(resp.status, StatusCode::OK);
    let third = resp.token();
    let resp = app.heartbeat("rotating", Some(&second), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    // … and a correctly signed token with a jti that was never current is no better.
    let stray = app.forge("rotating").await;
    let resp = app.heartbeat("rotating", Some(&stray), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.heartbeat("rotating", Some(&third), None).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn the_token_of_a_deregistered_plugin_is_401() {
    let app = TestApp::dev();
    let token = app.register_ok("gone").await;
    let resp = app.delete("/plugins/gone", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let resp = app.heartbeat("gone", Some(&token), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn another_plugins_token_or_the_admin_token_is_403() {
    let app = TestApp::dev();
    app.register_ok("alice").await;
    let bob = app.register_ok("bob").await;
    let resp = app.heartbeat("alice", Some(&bob), None).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    let resp = app.heartbeat("alice", Some(ADMIN_TOKEN), None).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.record("alice").await["status"], "registered");
}

#[tokio::test]
async fn a_disabled_plugin_is_403_plugin_disabled() {
    let app = TestApp::dev();
    let token = app.register_ok("benched").await;
    app.disable("benched", "maintenance").await;
    let resp = app.heartbeat("benched", Some(&token), None).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "plugin_disabled");
    let record = app.record("benched").await;
    assert_eq!(record["enabled"], false);
    assert_eq!(record["disabled_reason"], "maintenance");
    assert!(record["last_heartbeat"].is_null());
}

#[tokio::test]
async fn credentials_are_checked_before_the_body() {
    let app = TestApp::dev();
    app.register_ok("strict").await;
    let bob = app.register_ok("strict-bob").await;
    let bad = json!({ "health": "sick" });
    let resp = app.heartbeat("strict", None, Some(&bad)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .heartbeat("strict", Some("garbage-garbage-garbage"), Some(&bad))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.heartbeat("strict", Some(&bob), Some(&bad)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn a_revoked_token_is_401_even_with_a_bad_body() {
    // 401 → 403 → 400: a token whose jti is gone is 401, whatever the body says.
    let app = TestApp::dev();
    let old = app.register_ok("revoked-body").await;
    let resp = app.refresh("revoked-body", Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK);
    let bad = json!({ "health": "sick" });
    let resp = app.heartbeat("revoked-body", Some(&old), Some(&bad)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn an_unregistered_id_with_a_well_signed_token_is_401_and_with_the_admin_token_403() {
    // The table lists 404 for an unknown id, but the 401 → 403 → 404 order leaves no
    // credential that reaches it: a well-signed token whose plugin is gone is 401, and
    // the admin token may not heartbeat.
    let app = TestApp::dev();
    let ghost = app.forge("ghost").await;
    let resp = app.heartbeat("ghost", Some(&ghost), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.heartbeat("ghost", Some(ADMIN_TOKEN), None).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    let resp = app.heartbeat("ghost", None, None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}
