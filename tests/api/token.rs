//! `POST /plugins/{id}/token`: a fresh token; the old one stops working.

use axum::http::StatusCode;

use crate::helpers::{ADMIN_TOKEN, TOKEN_FIELDS, TestApp, assert_error, keys, rfc3339_utc, sorted};

#[tokio::test]
async fn refresh_answers_a_fresh_token_and_revokes_the_old_one() {
    let app = TestApp::dev();
    let old = app.register_ok("fresh").await;
    app.clock.advance(time::Duration::minutes(30));
    let now = vivified_ports::Clock::now(&*app.clock);
    let resp = app.refresh("fresh", Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let body = resp.json();
    assert_eq!(keys(&body), sorted(TOKEN_FIELDS), "{body}");
    assert!(body["status"].is_string());
    assert_eq!(body["plugin_id"], "fresh");
    assert_eq!(body["heartbeat_interval_secs"], 10);
    assert_eq!(body["heartbeat_interval_ms"], 10_000);
    let expires_at = rfc3339_utc(&body["expires_at"]);
    assert!(
        (expires_at - (now + time::Duration::hours(24))).abs() <= time::Duration::seconds(1),
        "a full lifetime from now: {expires_at}"
    );
    let new = resp.token();
    assert_ne!(new, old);

    let resp = app.heartbeat("fresh", Some(&old), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins/fresh", Some(&old)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.refresh("fresh", Some(&old)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");

    let resp = app.heartbeat("fresh", Some(&new), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    // Refresh keeps the record.
    let record = app.record("fresh").await;
    assert_eq!(record["status"], "active");
}

#[tokio::test]
async fn refresh_refuses_missing_invalid_and_expired_tokens_with_401() {
    let app = TestApp::builder().env("VIVIFIED_TOKEN_TTL", "1s").build();
    let token = app.register_ok("stale-token").await;
    let resp = app.refresh("stale-token", None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .refresh("stale-token", Some("garbage-garbage-garbage"))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    app.clock.advance(time::Duration::seconds(30));
    let resp = app.refresh("stale-token", Some(&token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn refresh_with_another_plugins_token_or_the_admin_token_is_403() {
    let app = TestApp::dev();
    let mine = app.register_ok("mine").await;
    let theirs = app.register_ok("theirs").await;
    let resp = app.refresh("mine", Some(&theirs)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    let resp = app.refresh("mine", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    // Neither touched the plugin's token.
    let resp = app.heartbeat("mine", Some(&mine), None).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_of_a_disabled_plugin_is_403_plugin_disabled() {
    let app = TestApp::dev();
    let token = app.register_ok("frozen").await;
    app.disable("frozen", "security review").await;
    let resp = app.refresh("frozen", Some(&token)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "plugin_disabled");
}

#[tokio::test]
async fn refresh_for_an_unregistered_id() {
    // As for heartbeats, 404 is unreachable under 401 → 403 → 404: a well-signed
    // token for a plugin that is gone is 401, the admin token is 403.
    let app = TestApp::dev();
    let ghost = app.forge("phantom").await;
    let resp = app.refresh("phantom", Some(&ghost)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.refresh("phantom", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn no_answer_but_register_and_refresh_carries_a_token() {
    // `TestApp::send` checks this on every response of every test; this test walks
    // one plugin through its whole life and says it explicitly.
    let app = TestApp::dev();
    let mut tokens = vec![app.register_ok("tight-lipped").await];
    let mut answers = Vec::new();
    let t = tokens[0].clone();
    answers.push(app.heartbeat("tight-lipped", Some(&t), None).await);
    answers.push(app.get("/plugins/tight-lipped", Some(&t)).await);
    answers.push(app.get("/plugins/tight-lipped", Some(ADMIN_TOKEN)).await);
    answers.push(app.get("/plugins", Some(ADMIN_TOKEN)).await);
    answers.push(app.get("/plugins", Some(&t)).await);
    answers.push(app.heartbeat("someone-else", Some(&t), None).await);
    let resp = app.refresh("tight-lipped", Some(&t)).await;
    assert_eq!(resp.status, StatusCode::OK);
    tokens.push(resp.token());
    answers.push(app.heartbeat("tight-lipped", Some(&t), None).await);
    answers.push(app.refresh("tight-lipped", Some(&t)).await);
    answers.push(
        app.register(&crate::helpers::manifest("tight-lipped"), None)
            .await,
    );
    answers.push(app.delete("/plugins/tight-lipped", Some(&tokens[1])).await);
    answers.push(app.get("/health", Some(&tokens[1])).await);
    for resp in &answers {
        let text = resp.text();
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "{}: {text}", resp.status);
        }
        assert!(!text.contains(ADMIN_TOKEN));
        assert!(!text.contains("eyJ"), "nothing token-like: {text}");
    }
}

#[tokio::test]
async fn the_key_set_is_public_cacheable_and_never_holds_a_secret() {
    // This app signs HS256 only: nothing to publish (secrets never are).
    let app = crate::helpers::TestApp::dev();
    let resp = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(resp.status, axum::http::StatusCode::OK);
    assert_eq!(
        resp.header("cache-control").as_deref(),
        Some("public, max-age=300")
    );
    assert_eq!(resp.json(), serde_json::json!({"keys": []}));
    assert!(!resp.text().contains(crate::helpers::JWT_SECRET));
}
