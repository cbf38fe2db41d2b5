//! Revocation by time: `POST /plugins/{id}/revoke-before` and `POST /tokens/revoke-before`
//! (admin). A token issued before the instant stops working at its next request, on
//! every route and every replica; the plugin proves itself again with a registration
//! credential; every revocation is on the audit trail.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use vivified_adapters::memory::InMemoryPluginStore;
use vivified_ports::PluginStore;

use crate::helpers::{
    ADMIN_TOKEN, REGISTRATION_SECRET, TestApp, assert_error, drain_lifecycle, manifest,
    rfc3339_utc, sealed_entries,
};

fn at(app: &TestApp, secs: i64) -> String {
    (app.clock_now() + time::Duration::seconds(secs))
        .format(&Rfc3339)
        .unwrap()
}

async fn revoke(app: &TestApp, id: &str, body: &Value) -> Value {
    let resp = app
        .post_json(
            &format!("/plugins/{id}/revoke-before"),
            Some(ADMIN_TOKEN),
            body,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.json()
}

async fn revoke_all(app: &TestApp, body: &Value) -> Value {
    let resp = app
        .post_json("/tokens/revoke-before", Some(ADMIN_TOKEN), body)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.json()
}

/// Every route a plugin token opens answers 401 `revoked_token` for `token`.
async fn assert_locked_out(app: &TestApp, id: &str, token: &str) {
    let resp = app.heartbeat(id, Some(token), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(resp.json()["reason"], "revoked_token", "{}", resp.text());
    let resp = app.refresh(id, Some(token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get(&format!("/plugins/{id}"), Some(token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.register(&manifest(id), Some(token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .post_json(
            "/events",
            Some(token),
            &json!({"event_type": "user.created", "payload": {}}),
        )
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get(&format!("/plugins/{id}/events"), Some(token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn revoking_a_plugin_locks_out_its_token_until_it_registers_again() {
    let app = TestApp::dev();
    let mut rx = app.bus.subscribe();
    let token = app.register_ok("leaky").await;
    let other = app.register_ok("bystander").await;
    assert_eq!(
        app.heartbeat("leaky", Some(&token), None).await.status,
        StatusCode::OK
    );
    drain_lifecycle(&mut rx);

    let answer = revoke(&app, "leaky", &json!({"at": "now"})).await;
    assert_eq!(answer["plugin_id"], "leaky");
    assert_eq!(answer["revoked"], 1);
    assert_eq!(rfc3339_utc(&answer["before"]), app.clock_now());
    assert_locked_out(&app, "leaky", &token).await;
    // Nobody else is touched.
    assert_eq!(
        app.heartbeat("bystander", Some(&other), None).await.status,
        StatusCode::OK
    );
    // Revoking again changes nothing and says so.
    assert_eq!(revoke(&app, "leaky", &json!({})).await["revoked"], 0);
    assert_eq!(drain_lifecycle(&mut rx), ["plugin.tokens_revoked"]);

    // Registering again (dev mode: no credential) takes the id over with a new token.
    let resp = app.register(&manifest("leaky"), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let fresh = resp.token();
    assert_eq!(
        app.heartbeat("leaky", Some(&fresh), None).await.status,
        StatusCode::OK
    );
    assert_locked_out(&app, "leaky", &token).await;
    assert_eq!(drain_lifecycle(&mut rx), ["plugin.replaced"]);

    let revocations = sealed_entries(&app, "plugin.revoke_tokens").await;
    let reasons: Vec<&str> = revocations
        .iter()
        .map(|e| e.entry.reason.as_str())
        .collect();
    assert_eq!(reasons, ["revoked", "nothing_to_revoke"]);
    assert!(
        revocations
            .iter()
            .all(|e| e.entry.actor == "operator:bootstrap")
    );
    assert_eq!(revocations[0].entry.target, "leaky");
    assert_eq!(revocations[0].entry.details["revoked"], 1);
    let replaced = sealed_entries(&app, "plugin.replaced").await;
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].entry.reason, "revoked_registration_replaced");
}

#[tokio::test]
async fn an_instant_in_the_past_spares_tokens_issued_after_it() {
    let app = TestApp::dev();
    let old = app.register_ok("old").await;
    let cut = at(&app, 5);
    app.clock.advance(time::Duration::seconds(10));
    let new = app.register_ok("new").await;

    assert_eq!(revoke(&app, "new", &json!({"at": cut})).await["revoked"], 0);
    let answer = revoke_all(&app, &json!({"at": cut})).await;
    assert_eq!(answer["revoked"], 1, "{answer}");
    assert_eq!(answer.get("plugin_id"), None);
    assert_locked_out(&app, "old", &old).await;
    assert_eq!(
        app.heartbeat("new", Some(&new), None).await.status,
        StatusCode::OK
    );
    // A refresh issues a token after the cut: it survives a second revocation at the cut.
    let refreshed = app.refresh("new", Some(&new)).await.token();
    assert_eq!(revoke_all(&app, &json!({"at": cut})).await["revoked"], 0);
    assert_eq!(
        app.heartbeat("new", Some(&refreshed), None).await.status,
        StatusCode::OK
    );
    // Now everything goes.
    assert_eq!(revoke_all(&app, &json!({"at": "now"})).await["revoked"], 1);
    assert_locked_out(&app, "new", &refreshed).await;
    let all = sealed_entries(&app, "tokens.revoke").await;
    let counts: Vec<&Value> = all.iter().map(|e| &e.entry.details["revoked"]).collect();
    assert_eq!(counts, [&json!(1), &json!(0), &json!(1)]);
    assert!(
        all.iter()
            .all(|e| e.entry.target == "*" && e.entry.actor == "operator:bootstrap")
    );
}

#[tokio::test]
async fn a_revocation_reaches_every_replica_at_the_next_request() {
    let store: Arc<dyn PluginStore> = Arc::new(InMemoryPluginStore::new());
    let a = TestApp::builder().store(store.clone()).build();
    let b = TestApp::builder().store(store).build();
    let token = a.register_ok("shared").await;
    // Replica b has verified (and remembers) the token.
    assert_eq!(
        b.heartbeat("shared", Some(&token), None).await.status,
        StatusCode::OK
    );
    revoke_all(&a, &json!({})).await;
    assert_locked_out(&b, "shared", &token).await;
}

#[tokio::test]
async fn production_takes_the_id_back_with_the_registration_secret_unless_disabled() {
    let app = TestApp::production();
    let resp = app
        .register(&manifest("prod-plugin"), Some(REGISTRATION_SECRET))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let token = resp.token();
    revoke(&app, "prod-plugin", &json!({"at": "now"})).await;
    assert_locked_out(&app, "prod-plugin", &token).await;
    // Without a credential, the id is held.
    let resp = app.register(&manifest("prod-plugin"), None).await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    // A disabled plugin stays out, revoked or not.
    app.disable("prod-plugin", "compromised").await;
    let resp = app
        .register(&manifest("prod-plugin"), Some(REGISTRATION_SECRET))
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    let resp = app
        .post_raw("/plugins/prod-plugin/enable", Some(ADMIN_TOKEN), None, "")
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = app
        .register(&manifest("prod-plugin"), Some(REGISTRATION_SECRET))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let fresh = resp.token();
    assert_eq!(
        app.heartbeat("prod-plugin", Some(&fresh), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revocation_is_for_the_admin_and_checks_its_instant() {
    let app = TestApp::dev();
    let token = app.register_ok("guarded").await;
    for uri in ["/plugins/guarded/revoke-before", "/tokens/revoke-before"] {
        let resp = app.post_json(uri, None, &json!({})).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        // 403 before the body is looked at.
        let resp = app.post_json(uri, Some(&token), &json!({"at": 7})).await;
        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
        let future = at(&app, 60);
        for bad in [
            json!({"at": future}),
            json!({"at": 1_765_000_000}),
            json!({"at": null}),
            json!({"at": "yesterday"}),
            json!({"at": "2026-12-07T09:30:00"}),
        ] {
            let resp = app.post_json(uri, Some(ADMIN_TOKEN), &bad).await;
            assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
            assert!(
                resp.json()["detail"].as_str().unwrap().contains("`at`"),
                "{}",
                resp.text()
            );
        }
        let resp = app
            .post_raw(uri, Some(ADMIN_TOKEN), Some("application/json"), "[1]")
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
    let resp = app
        .post_json(
            "/plugins/nobody/revoke-before",
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    // Nothing above revoked anything.
    assert_eq!(
        app.heartbeat("guarded", Some(&token), None).await.status,
        StatusCode::OK
    );
}
