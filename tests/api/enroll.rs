//! One-time enrollment: `POST /enrollments` (admin) mints a token bound to one plugin
//! id; a production registration presenting it registers that id once. Used, expired,
//! unknown and other-id tokens are 401 with a reason code, before the manifest is
//! looked at; every use is audited with the enrollment's id, never the token.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, REGISTRATION_SECRET, TestApp, assert_error, manifest, sealed_entries,
};

async fn enroll(app: &TestApp, id: &str, ttl: Option<&str>) -> Value {
    let mut body = json!({ "plugin_id": id });
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    let resp = app
        .post_json("/enrollments", Some(ADMIN_TOKEN), &body)
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.text());
    assert_eq!(resp.header("cache-control").as_deref(), Some("no-store"));
    resp.json()
}

fn token(answer: &Value) -> String {
    answer["token"].as_str().unwrap().to_owned()
}

fn assert_refused(resp: &crate::helpers::TestResponse, reason: &str) {
    assert_error(resp, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(resp.json()["reason"], reason, "{}", resp.text());
}

#[tokio::test]
async fn an_enrollment_token_registers_its_id_once() {
    let app = TestApp::builder().enrollment_only().build();
    // Without a credential, production says what it needs.
    let resp = app.register(&manifest("billing"), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    // The shared secret is not configured here: nothing but an enrollment registers.
    let resp = app
        .register(&manifest("billing"), Some(REGISTRATION_SECRET))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");

    let answer = enroll(&app, "billing", Some("30m")).await;
    let keys: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["enrollment_id", "expires_at", "plugin_id", "token"]);
    assert_eq!(answer["plugin_id"], "billing");
    assert!(token(&answer).starts_with(vivified_domain::registry::ENROLLMENT_PREFIX));
    let expires = crate::helpers::rfc3339_utc(&answer["expires_at"]);
    assert_eq!(expires, app.clock_now() + time::Duration::minutes(30));

    let resp = app
        .register(&manifest("billing"), Some(&token(&answer)))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let plugin_token = resp.token();
    assert_eq!(
        app.heartbeat("billing", Some(&plugin_token), None)
            .await
            .status,
        StatusCode::OK
    );
    // Once only, whatever the manifest.
    let resp = app
        .register(&manifest("billing"), Some(&token(&answer)))
        .await;
    assert_refused(&resp, "enrollment_used");
    let mut bad = manifest("billing");
    bad["version"] = json!("not-a-version");
    let resp = app.register(&bad, Some(&token(&answer))).await;
    assert_refused(&resp, "enrollment_used");

    // Audited with the enrollment's id; the token never appears.
    let id = answer["enrollment_id"].as_str().unwrap();
    let created = sealed_entries(&app, "enrollment.create").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].entry.details["enrollment_id"], id);
    assert_eq!(created[0].entry.target, "billing");
    let used = sealed_entries(&app, "enrollment.use").await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].entry.details["enrollment_id"], id);
    let all = app.audit.log.range(1, 10_000).await.unwrap();
    let text = serde_json::to_string(&all.iter().map(|e| &e.entry).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains(&token(&answer)),
        "the token is never audited"
    );
}

#[tokio::test]
async fn unknown_expired_and_other_id_tokens_are_401_before_the_manifest() {
    let app = TestApp::builder().enrollment_only().build();
    let other = enroll(&app, "other-plugin", None).await;
    let mut invalid = manifest("billing");
    invalid["version"] = json!("x");
    for body in [manifest("billing"), invalid.clone()] {
        let resp = app.register(&body, Some(&token(&other))).await;
        assert_refused(&resp, "enrollment_for_another_plugin");
        let resp = app
            .register(&body, Some("venr_00000000000000000000000000000000"))
            .await;
        assert_refused(&resp, "invalid_enrollment");
    }
    let short = enroll(&app, "billing", Some("1s")).await;
    app.clock.advance(time::Duration::seconds(1));
    for body in [manifest("billing"), invalid] {
        let resp = app.register(&body, Some(&token(&short))).await;
        assert_refused(&resp, "enrollment_expired");
    }
    // Refusals leave the enrollment for the right id usable.
    let good = enroll(&app, "billing", None).await;
    let mut invalid = manifest("billing");
    invalid["traits"] = json!(["handles_phi"]);
    let resp = app.register(&invalid, Some(&token(&good))).await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
    let resp = app
        .register(&manifest("billing"), Some(&token(&good)))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let denied = sealed_entries(&app, "plugin.register").await;
    let reasons: Vec<&str> = denied.iter().map(|e| e.entry.reason.as_str()).collect();
    for reason in [
        "enrollment_for_another_plugin",
        "invalid_enrollment",
        "enrollment_expired",
    ] {
        assert!(reasons.contains(&reason), "{reason} audited: {reasons:?}");
    }
}

#[tokio::test]
async fn a_held_id_is_409_and_keeps_the_enrollment_a_revoked_one_is_taken_over() {
    let app = TestApp::builder().enrollment_only().build();
    let first = enroll(&app, "billing", None).await;
    let resp = app
        .register(&manifest("billing"), Some(&token(&first)))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let old = resp.token();
    let second = enroll(&app, "billing", None).await;
    let resp = app
        .register(&manifest("billing"), Some(&token(&second)))
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    // After an operator revokes its tokens, the unused second enrollment takes it over.
    let resp = app
        .post_json(
            "/plugins/billing/revoke-before",
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = app
        .register(&manifest("billing"), Some(&token(&second)))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let resp = app.heartbeat("billing", Some(&old), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn enrollments_are_for_the_admin_with_a_valid_id_and_lifetime() {
    let app = TestApp::builder().enrollment_only().build();
    let resp = app
        .post_json("/enrollments", None, &json!({"plugin_id": "billing"}))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let good = enroll(&app, "billing", None).await;
    let plugin = app
        .register(&manifest("billing"), Some(&token(&good)))
        .await
        .token();
    // A plugin's token gets 403 before its body is read.
    let resp = app
        .post_json("/enrollments", Some(&plugin), &json!({"plugin_id": 7}))
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    // An enrollment token is not an admin credential.
    let another = enroll(&app, "other", None).await;
    let resp = app
        .post_json(
            "/enrollments",
            Some(&token(&another)),
            &json!({"plugin_id": "x"}),
        )
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    for (body, needle) in [
        (json!({}), "plugin_id"),
        (json!({"plugin_id": 7}), "plugin_id"),
        (json!({"plugin_id": "Not_An_Id"}), "plugin_id"),
        (json!({"plugin_id": "billing", "ttl": "8d"}), "ttl"),
        (json!({"plugin_id": "billing", "ttl": "0s"}), "ttl"),
        (json!({"plugin_id": "billing", "ttl": "soon"}), "ttl"),
        (json!({"plugin_id": "billing", "ttl": 3600}), "ttl"),
    ] {
        let resp = app
            .post_json("/enrollments", Some(ADMIN_TOKEN), &body)
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(
            resp.json()["detail"].as_str().unwrap().contains(needle),
            "{body}: {}",
            resp.text()
        );
    }
    assert_eq!(
        crate::helpers::rfc3339_utc(&enroll(&app, "week", Some("7d")).await["expires_at"]),
        app.clock_now() + time::Duration::days(7)
    );
}

#[tokio::test]
async fn the_shared_secret_still_registers_where_it_is_allowed() {
    let app = TestApp::production();
    let resp = app
        .register(&manifest("legacy"), Some(REGISTRATION_SECRET))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let answer = enroll(&app, "modern", None).await;
    let resp = app
        .register(&manifest("modern"), Some(&token(&answer)))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}
