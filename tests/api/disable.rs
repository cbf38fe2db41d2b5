//! `POST /plugins/{id}/disable` and `/enable`: admin only, idempotent, 200 with the
//! record; a disabled plugin keeps its token but is refused with 403 `plugin_disabled`.

use axum::http::StatusCode;
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, assert_record_shape};

#[tokio::test]
async fn disable_and_enable_are_idempotent_and_answer_the_record() {
    let app = TestApp::dev();
    let mut rx = app.bus.subscribe();
    let token = app.register_ok("toggle").await;
    for _ in 0..2 {
        let resp = app
            .post_json(
                "/plugins/toggle/disable",
                Some(ADMIN_TOKEN),
                &json!({"reason": "too noisy"}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        let record = resp.json();
        assert_record_shape(&record);
        assert_eq!(record["enabled"], false);
        assert_eq!(record["disabled_reason"], "too noisy");
    }
    let resp = app.heartbeat("toggle", Some(&token), None).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "plugin_disabled");
    let resp = app.refresh("toggle", Some(&token)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "plugin_disabled");
    // The token still identifies the plugin: it can read its own record.
    let resp = app.get("/plugins/toggle", Some(&token)).await;
    assert_eq!(resp.status, StatusCode::OK);

    for _ in 0..2 {
        let resp = app
            .post_raw("/plugins/toggle/enable", Some(ADMIN_TOKEN), None, "")
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        let record = resp.json();
        assert_eq!(record["enabled"], true);
        assert!(record["disabled_reason"].is_null());
    }
    let resp = app.heartbeat("toggle", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK);
    let mut kinds = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => kinds.push(e.event_type),
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        kinds,
        ["plugin.registered", "plugin.disabled", "plugin.enabled"],
        "one event per transition, none for a repeated call"
    );
}

#[tokio::test]
async fn a_new_reason_replaces_the_old_one() {
    let app = TestApp::dev();
    app.register_ok("reasons").await;
    app.disable("reasons", "first").await;
    app.disable("reasons", "second").await;
    assert_eq!(app.record("reasons").await["disabled_reason"], "second");
}

#[tokio::test]
async fn disable_needs_the_admin_token_and_a_reason() {
    let app = TestApp::dev();
    let token = app.register_ok("guarded").await;
    let body = json!({"reason": "x"});
    let resp = app.post_json("/plugins/guarded/disable", None, &body).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .post_json("/plugins/guarded/disable", Some(&token), &body)
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    let resp = app
        .post_json("/plugins/guarded/enable", Some(&token), &body)
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    let resp = app
        .post_json("/plugins/nobody/disable", Some(ADMIN_TOKEN), &body)
        .await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    let resp = app
        .post_json("/plugins/nobody/enable", Some(ADMIN_TOKEN), &body)
        .await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    for bad in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": 7}),
        json!({"reason": "x".repeat(501)}),
    ] {
        let resp = app
            .post_json("/plugins/guarded/disable", Some(ADMIN_TOKEN), &bad)
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
    assert_eq!(
        app.record("guarded").await["enabled"],
        true,
        "nothing was disabled"
    );
}
