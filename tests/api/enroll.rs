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
        (json!({"plugin_id": "billing", "ttl": null}), "ttl"),
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

#[tokio::test]
async fn enrollments_are_listed_without_tokens_and_cancelled_while_unused() {
    let app = TestApp::builder().enrollment_only().build();
    let first = enroll(&app, "ledger", Some("1h")).await;
    app.clock.advance(time::Duration::seconds(1));
    let second = enroll(&app, "ledger", Some("10m")).await;
    app.clock.advance(time::Duration::seconds(1));
    let other = enroll(&app, "billing", None).await;
    let id = |v: &Value| v["enrollment_id"].as_str().unwrap().to_owned();

    // Newest first, filtered, never a token.
    let resp = app.get("/enrollments", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let listed: Vec<String> = resp.json()["enrollments"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(listed, [id(&other), id(&second), id(&first)]);
    for answer in [&first, &second, &other] {
        assert!(!resp.text().contains(&token(answer)), "a token was listed");
    }
    let resp = app
        .get("/enrollments?plugin_id=ledger&limit=1", Some(ADMIN_TOKEN))
        .await;
    let page = resp.json()["enrollments"].clone();
    assert_eq!(page.as_array().unwrap().len(), 1);
    let view = &page[0];
    let keys: Vec<&str> = view
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "created_by",
            "enrollment_id",
            "expires_at",
            "plugin_id",
            "state",
            "used_at"
        ]
    );
    assert_eq!(
        (&view["enrollment_id"], &view["state"], &view["used_at"]),
        (&json!(id(&second)), &json!("pending"), &Value::Null)
    );

    // Used, and expired: the state says so.
    let resp = app
        .register(&manifest("ledger"), Some(&token(&first)))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    app.clock.advance(time::Duration::minutes(11));
    let resp = app
        .get("/enrollments?plugin_id=ledger", Some(ADMIN_TOKEN))
        .await;
    let states: Vec<(String, String)> = resp.json()["enrollments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (id(e), e["state"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        states,
        [
            (id(&second), "expired".to_owned()),
            (id(&first), "used".to_owned())
        ]
    );

    // Cancelled while unused: 200 once, the token registers nothing, audited.
    let uri = format!("/enrollments/{}", id(&other));
    let resp = app.delete(&uri, Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["state"], "cancelled");
    assert_eq!(resp.json()["plugin_id"], "billing");
    assert_error(
        &app.delete(&uri, Some(ADMIN_TOKEN)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let resp = app
        .register(&manifest("billing"), Some(&token(&other)))
        .await;
    assert_refused(&resp, "invalid_enrollment");
    let cancelled = sealed_entries(&app, "enrollment.cancel").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        cancelled[0].entry.details["enrollment_id"],
        id(&other).as_str()
    );
    assert_eq!(cancelled[0].entry.target, "billing");
    // A used one is history: 409 conflict.
    let resp = app
        .delete(&format!("/enrollments/{}", id(&first)), Some(ADMIN_TOKEN))
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "conflict");
    assert_eq!(resp.json()["reason"], "enrollment_used");

    // Admin only, and bad parameters are named.
    assert_error(
        &app.get("/enrollments", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &app.delete(&uri, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    for query in ["?limit=0", "?limit=1001", "?plugin_id=Not_An_Id"] {
        let resp = app
            .get(&format!("/enrollments{query}"), Some(ADMIN_TOKEN))
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }

    // A week after they ended, purged (the sweeper does this hourly).
    app.clock.advance(time::Duration::days(8));
    assert_eq!(app.registry.purge_enrollments().await.unwrap(), 2);
    let resp = app.get("/enrollments", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.json()["enrollments"], json!([]));
    let purged = sealed_entries(&app, "enrollment.purge").await;
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0].entry.details["deleted"], 2);
    assert_eq!(app.registry.purge_enrollments().await.unwrap(), 0);
}
