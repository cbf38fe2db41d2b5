//! Operators as named people: accounts, roles, API tokens, `whoami`, and the audit
//! trail naming who did what.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// Creates operator `name` with `role` as the bootstrap admin and returns a token of
/// it.
pub async fn operator_with_token(app: &TestApp, name: &str, role: &str) -> String {
    let created = app
        .post_json(
            "/operators",
            Some(ADMIN_TOKEN),
            &json!({"name": name, "role": role}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    token_of(app, name, Some(ADMIN_TOKEN)).await
}

/// A new token of operator `name`, minted with `bearer`.
pub async fn token_of(app: &TestApp, name: &str, bearer: Option<&str>) -> String {
    let minted = app
        .post_json(
            &format!("/operators/{name}/tokens"),
            bearer,
            &json!({"label": "laptop"}),
        )
        .await;
    assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.text());
    assert_eq!(minted.header("cache-control").as_deref(), Some("no-store"));
    minted.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_named_operator_acts_under_its_own_name() {
    let app = TestApp::dev();
    app.register_ok("ehr").await;
    let alice = operator_with_token(&app, "alice", "operator").await;
    assert!(alice.starts_with("viv_op_"), "{alice}");
    let prefix = alice.split('_').nth(2).unwrap().to_owned();

    let me = app.get("/whoami", Some(&alice)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let me = me.json();
    assert_eq!(me["name"], "alice");
    assert_eq!(me["kind"], "operator");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["auth"], "token");
    assert_eq!(me["credential"], prefix.as_str());
    rfc3339_utc(&me["expires_at"]);

    let disabled = app
        .post_json(
            "/plugins/ehr/disable",
            Some(&alice),
            &json!({"reason": "maintenance"}),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text());
    let entries = sealed_entries(&app, "plugin.disable").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.actor, "operator:alice");
    assert_eq!(
        entries[0].entry.details,
        json!({"auth": "token", "credential": prefix})
    );
    // Who created alice, and her token, is on the trail too — never the token.
    let created = sealed_entries(&app, "operator.create").await;
    assert_eq!(created[0].entry.actor, "operator:bootstrap");
    assert_eq!(created[0].entry.target, "operator:alice");
    let minted = sealed_entries(&app, "operator.token.create").await;
    assert_eq!(minted[0].entry.details["prefix"], prefix.as_str());
    let everything = app.audit.log.range(1, 10_000).await.unwrap();
    let text = serde_json::to_string(
        &everything
            .iter()
            .map(|e| e.entry.details.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !text.contains(&alice),
        "the token is not in the audit trail"
    );
}

#[tokio::test]
async fn the_bootstrap_token_is_the_bootstrap_admin() {
    let app = TestApp::dev();
    let me = app.get("/whoami", Some(ADMIN_TOKEN)).await.json();
    assert_eq!(
        me,
        json!({
            "name": "bootstrap", "kind": "operator", "role": "admin",
            "auth": "bootstrap_token", "credential": null, "expires_at": null,
        })
    );
    let token = app.register_ok("p1").await;
    let plugin = app.get("/whoami", Some(&token)).await.json();
    assert_eq!(plugin["name"], "p1");
    assert_eq!(plugin["kind"], "plugin");
    assert_error(
        &app.get("/whoami", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn roles_include_the_ones_below_and_refusals_name_the_role_needed() {
    let app = TestApp::dev();
    app.register_ok("ehr").await;
    let viewer = operator_with_token(&app, "vera", "viewer").await;
    let auditor = operator_with_token(&app, "otto", "auditor").await;

    assert_eq!(
        app.get("/plugins", Some(&viewer)).await.status,
        StatusCode::OK
    );
    let refused = app.get("/audit", Some(&viewer)).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(refused.json()["reason"], "insufficient_role");
    assert_eq!(refused.json()["required_role"], "auditor");

    assert_eq!(
        app.get("/audit", Some(&auditor)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/plugins/ehr", Some(&auditor)).await.status,
        StatusCode::OK
    );
    // 403 before 400: the body is not looked at.
    let refused = app
        .post_raw(
            "/plugins/ehr/disable",
            Some(&auditor),
            Some("application/json"),
            "{",
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(refused.json()["required_role"], "operator");
    let refused = app
        .post_json(
            "/operators",
            Some(&auditor),
            &json!({"name": "x", "role": "admin"}),
        )
        .await;
    assert_eq!(refused.json()["required_role"], "admin");
}

#[tokio::test]
async fn operators_manage_their_own_tokens_and_only_theirs() {
    let app = TestApp::dev();
    let vera = operator_with_token(&app, "vera", "viewer").await;
    operator_with_token(&app, "walt", "viewer").await;

    // Her own: read, mint, revoke.
    let second = token_of(&app, "vera", Some(&vera)).await;
    let own = app.get("/operators/vera", Some(&second)).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    let own = own.json();
    assert_eq!(own["role"], "viewer");
    let tokens = own["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    for t in tokens {
        assert_eq!(
            keys(t),
            sorted(&["prefix", "label", "created_at", "expires_at", "expired"])
        );
    }
    let hash = hex::encode(Sha256::digest(vera.as_bytes()));
    assert!(
        !own.to_string().contains(&hash),
        "no token hash is answered"
    );
    let prefix = vera.split('_').nth(2).unwrap();
    let revoked = app
        .delete(&format!("/operators/vera/tokens/{prefix}"), Some(&second))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text());
    assert_error(
        &app.get("/whoami", Some(&vera)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Not another's.
    for resp in [
        app.get("/operators/walt", Some(&second)).await,
        app.post_json("/operators/walt/tokens", Some(&second), &json!({}))
            .await,
        app.delete("/operators/walt/tokens/000000000000", Some(&second))
            .await,
        app.delete("/operators/walt", Some(&second)).await,
    ] {
        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    }
    // The admin may.
    assert_eq!(
        app.get("/operators/walt", Some(ADMIN_TOKEN)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_an_operator_ends_its_tokens_at_once() {
    let app = TestApp::dev();
    let alice = operator_with_token(&app, "alice", "admin").await;
    assert_eq!(
        app.get("/plugins", Some(&alice)).await.status,
        StatusCode::OK
    );
    let gone = app.delete("/operators/alice", Some(ADMIN_TOKEN)).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let refused = app.get("/plugins", Some(&alice)).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(refused.json()["reason"], "invalid_token");
    assert_error(
        &app.delete("/operators/alice", Some(ADMIN_TOKEN)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The name is free again; the old token does not come back with it.
    operator_with_token(&app, "alice", "viewer").await;
    assert_eq!(
        app.get("/plugins", Some(&alice)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn tokens_and_operators_expire() {
    let app = TestApp::dev();
    app.post_json(
        "/operators",
        Some(ADMIN_TOKEN),
        &json!({"name": "temp", "role": "viewer"}),
    )
    .await;
    let minted = app
        .post_json(
            "/operators/temp/tokens",
            Some(ADMIN_TOKEN),
            &json!({"ttl": "1h"}),
        )
        .await
        .json();
    let token = minted["token"].as_str().unwrap().to_owned();
    let expires = rfc3339_utc(&minted["expires_at"]);
    assert_eq!(
        expires,
        app.clock_now() + std::time::Duration::from_secs(3600)
    );
    assert_eq!(
        app.get("/plugins", Some(&token)).await.status,
        StatusCode::OK
    );
    app.clock.advance(time::Duration::hours(1));
    let refused = app.get("/plugins", Some(&token)).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(refused.json()["reason"], "expired_token");

    // An operator's own expiry ends every token of it.
    let until = app.clock_now() + std::time::Duration::from_secs(60);
    let created = app
        .post_json(
            "/operators",
            Some(ADMIN_TOKEN),
            &json!({"name": "contractor", "role": "viewer",
                    "expires_at": vivified_server::wire::rfc3339(until)}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let token = token_of(&app, "contractor", Some(ADMIN_TOKEN)).await;
    let me = app.get("/whoami", Some(&token)).await.json();
    assert_eq!(rfc3339_utc(&me["expires_at"]), until);
    app.clock.advance(time::Duration::minutes(1));
    assert_eq!(
        app.get("/plugins", Some(&token)).await.json()["reason"],
        "expired_token"
    );
}

#[tokio::test]
async fn a_wrong_token_says_nothing_about_whether_its_prefix_exists() {
    let app = TestApp::dev();
    let real = operator_with_token(&app, "alice", "admin").await;
    let prefix = real.split('_').nth(2).unwrap();
    let wrong_secret = format!("viv_op_{prefix}_{}", "0".repeat(64));
    let unknown_prefix = format!("viv_op_ffffffffffff_{}", "0".repeat(64));
    let malformed = "viv_op_nonsense";
    let mut answers: Vec<Value> = Vec::new();
    for t in [wrong_secret.as_str(), unknown_prefix.as_str(), malformed] {
        let r = app.get("/plugins", Some(t)).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
        answers.push(r.json());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(answers[0]["reason"], "invalid_token");
}

#[tokio::test]
async fn plugins_cannot_manage_operators() {
    let app = TestApp::dev();
    let token = app.register_ok("p1").await;
    let refused = app
        .post_json(
            "/operators",
            Some(&token),
            &json!({"name": "x", "role": "admin"}),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(refused.json()["reason"], "admin_token_required");
    // And an operator is not a plugin.
    let alice = operator_with_token(&app, "alice", "admin").await;
    let refused = app.heartbeat("p1", Some(&alice), None).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(refused.json()["reason"], "plugin_token_required");
}

#[tokio::test]
async fn bad_operator_requests_name_what_is_wrong() {
    let app = TestApp::dev();
    let cases = [
        (json!({"name": "Alice", "role": "viewer"}), "name"),
        (json!({"name": "a".repeat(64), "role": "viewer"}), "name"),
        (json!({"name": "bootstrap", "role": "admin"}), "bootstrap"),
        (json!({"name": "bob", "role": "root"}), "role"),
        (json!({"name": "bob"}), "role"),
        (json!({"role": "viewer"}), "name"),
        (
            json!({"name": "bob", "role": "viewer", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "bob", "role": "viewer", "expires_at": null}),
            "expires_at",
        ),
        (
            json!({"name": "bob", "role": "viewer", "extra": 1}),
            "extra",
        ),
        (
            json!({"name": "bob", "role": "viewer", "expires_at": "2000-01-01T00:00:00Z"}),
            "future",
        ),
    ];
    for (body, names) in cases {
        let resp = app.post_json("/operators", Some(ADMIN_TOKEN), &body).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(
            resp.json()["detail"].as_str().unwrap().contains(names),
            "{body} → {}",
            resp.text()
        );
    }
    operator_with_token(&app, "bob", "viewer").await;
    let again = app
        .post_json(
            "/operators",
            Some(ADMIN_TOKEN),
            &json!({"name": "bob", "role": "admin"}),
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT, "conflict");
    assert_eq!(again.json()["reason"], "operator_exists");

    for (body, names) in [
        (json!({"label": "x".repeat(101)}), "label"),
        (json!({"label": "a\nb"}), "label"),
        (json!({"label": 3}), "label"),
        (json!({"ttl": "400d"}), "ttl"),
        (json!({"ttl": "0s"}), "ttl"),
        (json!({"ttl": 60}), "ttl"),
    ] {
        let resp = app
            .post_json("/operators/bob/tokens", Some(ADMIN_TOKEN), &body)
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(
            resp.json()["detail"].as_str().unwrap().contains(names),
            "{body} → {}",
            resp.text()
        );
    }
    assert_error(
        &app.post_json("/operators/nobody/tokens", Some(ADMIN_TOKEN), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn operators_are_listed_by_name_in_pages() {
    let app = TestApp::dev();
    for n in ["carol", "alice", "bob"] {
        operator_with_token(&app, n, "viewer").await;
    }
    let page = app
        .get("/operators?limit=2", Some(ADMIN_TOKEN))
        .await
        .json();
    let names: Vec<&str> = page["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(
        keys(&page["operators"][0]),
        sorted(&["name", "role", "created_at", "created_by", "expires_at"])
    );
    assert_eq!(page["operators"][0]["created_by"], "operator:bootstrap");
    let rest = app
        .get("/operators?after=bob", Some(ADMIN_TOKEN))
        .await
        .json();
    assert_eq!(rest["operators"][0]["name"], "carol");
    assert_error(
        &app.get("/operators?limit=0", Some(ADMIN_TOKEN)).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert_error(
        &app.get("/operators?color=red", Some(ADMIN_TOKEN)).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
}
