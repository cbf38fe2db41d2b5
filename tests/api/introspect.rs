//! `POST /tokens/introspect`: a plugin (or the admin) asks whether another token is
//! current, and what its plugin declared. Inactive answers say nothing more.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, example, keys, sorted};

async fn introspect(app: &TestApp, caller: Option<&str>, token: &str) -> Value {
    let resp = app
        .post_json("/tokens/introspect", caller, &json!({ "token": token }))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.header("cache-control").as_deref(), Some("no-store"));
    resp.json()
}

#[tokio::test]
async fn an_active_token_reveals_its_plugin_traits_and_classification() {
    let app = TestApp::dev();
    let caller = app.register_ok("gateway").await;
    let resp = app.register(&example("user-management.json"), None).await;
    assert_eq!(resp.status, StatusCode::OK);
    let subject = resp.token();
    let answer = introspect(&app, Some(&caller), &subject).await;
    assert_eq!(
        keys(&answer),
        sorted(&[
            "active",
            "plugin_id",
            "traits",
            "data_classification",
            "exp"
        ])
    );
    assert_eq!(answer["active"], true);
    assert_eq!(answer["plugin_id"], "user-management");
    assert_eq!(answer["traits"], json!(["handles_pii", "audit_required"]));
    assert_eq!(answer["data_classification"], json!(["pii", "internal"]));
    assert!(answer["exp"].as_i64().is_some_and(|e| e > 0));
    // The admin may ask too.
    assert_eq!(
        introspect(&app, Some(ADMIN_TOKEN), &subject).await["active"],
        true
    );
}

#[tokio::test]
async fn revoked_forged_garbage_and_disabled_tokens_are_inactive_without_details() {
    let app = TestApp::dev();
    let caller = app.register_ok("asker").await;
    let old = app.register_ok("subject").await;
    let resp = app.refresh("subject", Some(&old)).await;
    let current = resp.token();
    let forged = app
        .forge_with(
            "some-other-secret-of-at-least-32-bytes!",
            "subject",
            vivified_ports::Clock::now(&*app.clock),
        )
        .await;
    for token in [
        old.as_str(),
        forged.as_str(),
        "garbage",
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        let answer = introspect(&app, Some(&caller), token).await;
        assert_eq!(answer, json!({"active": false}), "{token}");
    }
    app.disable("subject", "investigating").await;
    assert_eq!(
        introspect(&app, Some(&caller), &current).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn the_caller_must_be_a_current_enabled_plugin_or_the_admin() {
    let app = TestApp::dev();
    let subject = app.register_ok("subject").await;
    let resp = app
        .post_json("/tokens/introspect", None, &json!({ "token": subject }))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .post_json(
            "/tokens/introspect",
            Some("nonsense"),
            &json!({ "token": subject }),
        )
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let caller = app.register_ok("caller").await;
    app.disable("caller", "x").await;
    let resp = app
        .post_json(
            "/tokens/introspect",
            Some(&caller),
            &json!({ "token": subject }),
        )
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "plugin_disabled");
    // 403 before 400: a disabled caller learns nothing about its body.
    let resp = app
        .post_json("/tokens/introspect", Some(&caller), &json!({ "token": 5 }))
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "plugin_disabled");
    for bad in [json!({}), json!({"token": ""}), json!({"token": 5})] {
        let resp = app
            .post_json("/tokens/introspect", Some(ADMIN_TOKEN), &bad)
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
}
