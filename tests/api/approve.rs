//! Approval of sensitive traits: in production a plugin that newly declares
//! `handles_phi` or `external_service` may only heartbeat, refresh, re-register and read
//! its record until an operator approves (`POST /plugins/{id}/approve`); it publishes,
//! pulls, introspects and receives nothing before. Dev mode approves at once.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, REGISTRATION_SECRET, TestApp, assert_error, drain_lifecycle, manifest,
    phi_manifest, sealed_entries,
};

async fn register(app: &TestApp, m: &Value, bearer: &str) -> String {
    let resp = app.register(m, Some(bearer)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.token()
}

async fn approve(app: &TestApp, id: &str) -> Value {
    let resp = app
        .post_raw(
            &format!("/plugins/{id}/approve"),
            Some(ADMIN_TOKEN),
            None,
            "",
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.json()
}

async fn publish(app: &TestApp, token: &str) -> crate::helpers::TestResponse {
    app.post_json(
        "/events",
        Some(token),
        &json!({"event_type": "patient.updated", "payload": {"id": 1}, "data_traits": ["phi"]}),
    )
    .await
}

fn pending(resp: &crate::helpers::TestResponse) {
    assert_error(resp, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(resp.json()["reason"], "pending_approval", "{}", resp.text());
}

#[tokio::test]
async fn a_phi_plugin_waits_for_an_operator_before_it_takes_part() {
    let app = TestApp::production();
    let mut rx = app.bus.subscribe();
    let token = register(&app, &phi_manifest("ehr", &[], &[]), REGISTRATION_SECRET).await;
    let record = app.record("ehr").await;
    assert_eq!(record["approval"], "pending");
    assert_eq!(record["pending_traits"], json!(["handles_phi"]));

    // What it may do.
    let resp = app.heartbeat("ehr", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK);
    let token = app.refresh("ehr", Some(&token)).await.token();
    let resp = app.get("/plugins/ehr", Some(&token)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["approval"], "pending");
    // What it may not.
    pending(&publish(&app, &token).await);
    pending(&app.get("/plugins/ehr/events", Some(&token)).await);
    pending(
        &app.post_json("/tokens/introspect", Some(&token), &json!({"token": token}))
            .await,
    );
    let resp = app
        .post_json(
            "/tokens/introspect",
            Some(ADMIN_TOKEN),
            &json!({"token": token}),
        )
        .await;
    assert_eq!(resp.json()["active"], false, "nobody takes its calls");

    drain_lifecycle(&mut rx);
    let approved = approve(&app, "ehr").await;
    assert_eq!(approved["approval"], "approved");
    assert_eq!(approved["pending_traits"], json!([]));
    assert_eq!(drain_lifecycle(&mut rx), ["plugin.approved"]);
    assert_eq!(publish(&app, &token).await.status, StatusCode::ACCEPTED);
    // Idempotent: nothing pending, nothing happens.
    approve(&app, "ehr").await;
    assert!(drain_lifecycle(&mut rx).is_empty());
    let audited = sealed_entries(&app, "plugin.approve").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].entry.actor, "operator:bootstrap");
    assert_eq!(audited[0].entry.details["traits"], json!(["handles_phi"]));
}

#[tokio::test]
async fn a_subscriber_pending_approval_receives_nothing() {
    let app = TestApp::production();
    let ehr = register(&app, &phi_manifest("ehr", &[], &[]), REGISTRATION_SECRET).await;
    let chart = register(
        &app,
        &phi_manifest("chart", &[], &["patient.*"]),
        REGISTRATION_SECRET,
    )
    .await;
    approve(&app, "ehr").await;
    let resp = publish(&app, &ehr).await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.json()["delivered"], 0, "chart waits for approval");
    approve(&app, "chart").await;
    let resp = publish(&app, &ehr).await;
    assert_eq!(resp.json()["delivered"], 1, "{}", resp.text());
    let pulled = app.get("/plugins/chart/events", Some(&chart)).await;
    assert_eq!(pulled.status, StatusCode::OK);
    assert_eq!(pulled.json()["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn only_a_newly_declared_trait_waits_again() {
    let app = TestApp::production();
    let token = register(&app, &phi_manifest("mailer", &[], &[]), REGISTRATION_SECRET).await;
    approve(&app, "mailer").await;
    // The same manifest again: still approved.
    let token = register(&app, &phi_manifest("mailer", &[], &[]), &token).await;
    assert_eq!(app.record("mailer").await["approval"], "approved");
    // Now it reaches outside: that one trait waits.
    let token = register(
        &app,
        &phi_manifest("mailer", &["external_service"], &[]),
        &token,
    )
    .await;
    let record = app.record("mailer").await;
    assert_eq!(record["pending_traits"], json!(["external_service"]));
    pending(&publish(&app, &token).await);
    approve(&app, "mailer").await;
    assert_eq!(publish(&app, &token).await.status, StatusCode::ACCEPTED);
    // A plugin without sensitive traits never waits.
    register(&app, &manifest("plain"), REGISTRATION_SECRET).await;
    let plain = app.record("plain").await;
    assert_eq!(plain["approval"], "approved");
    assert_eq!(plain["pending_traits"], json!([]));
}

#[tokio::test]
async fn dev_mode_approves_at_once() {
    let app = TestApp::dev();
    let resp = app
        .register(&phi_manifest("ehr", &["external_service"], &[]), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(app.record("ehr").await["approval"], "approved");
    assert_eq!(
        publish(&app, &resp.token()).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn approval_is_for_the_admin() {
    let app = TestApp::production();
    let token = register(&app, &phi_manifest("ehr", &[], &[]), REGISTRATION_SECRET).await;
    let resp = app.post_raw("/plugins/ehr/approve", None, None, "").await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .post_raw("/plugins/ehr/approve", Some(&token), None, "")
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(resp.json()["reason"], "admin_token_required");
    let resp = app
        .post_raw("/plugins/nobody/approve", Some(ADMIN_TOKEN), None, "")
        .await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.record("ehr").await["approval"], "pending");
}

#[tokio::test]
async fn a_refusal_disables_the_plugin_and_keeps_it_waiting() {
    let app = TestApp::production();
    let token = register(&app, &phi_manifest("ehr", &[], &[]), REGISTRATION_SECRET).await;
    let refuse = |reason: Value| {
        let app = &app;
        async move {
            app.post_json(
                "/plugins/ehr/refuse",
                Some(ADMIN_TOKEN),
                &json!({ "reason": reason }),
            )
            .await
        }
    };
    // The reason is required, the admin token first.
    let resp = app
        .post_json("/plugins/ehr/refuse", Some(&token), &json!({"reason": "x"}))
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    assert_error(
        &refuse(json!("")).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );

    let resp = refuse(json!("no BAA on file")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let record = resp.json();
    assert_eq!(record["enabled"], false);
    assert_eq!(
        record["disabled_reason"],
        "approval refused: no BAA on file"
    );
    assert_eq!(record["approval"], "pending");
    assert_error(
        &app.heartbeat("ehr", Some(&token), None).await,
        StatusCode::FORBIDDEN,
        "plugin_disabled",
    );
    // Audited with the traits and the reason; the same refusal again changes nothing.
    let entries = sealed_entries(&app, "plugin.approval_refused").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.actor, "operator:bootstrap");
    assert_eq!(
        entries[0].entry.details,
        json!({"traits": ["handles_phi"], "reason": "no BAA on file", "auth": "bootstrap_token"})
    );
    assert_eq!(refuse(json!("no BAA on file")).await.status, StatusCode::OK);
    assert_eq!(
        sealed_entries(&app, "plugin.approval_refused").await.len(),
        1
    );

    // Enabled again, it still waits; re-registered without the trait, it waits for nothing.
    let resp = app
        .post_raw("/plugins/ehr/enable", Some(ADMIN_TOKEN), None, "")
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["approval"], "pending");
    pending(&publish(&app, &token).await);
    let token = register(&app, &manifest("ehr"), &token).await;
    assert_eq!(app.record("ehr").await["approval"], "approved");
    let resp = app
        .post_json(
            "/plugins/ehr/refuse",
            Some(ADMIN_TOKEN),
            &json!({"reason": "late"}),
        )
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "conflict");
    assert_eq!(resp.json()["reason"], "nothing_pending");
    assert_eq!(
        app.heartbeat("ehr", Some(&token), None).await.status,
        StatusCode::OK
    );
}
