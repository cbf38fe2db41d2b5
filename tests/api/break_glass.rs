//! Break-glass (§164.312(a)(2)(ii), emergency access): an operator raises itself to
//! admin for a bounded time, with a reason; audited, announced, counted, and every
//! action under it says so.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::operators::operator_with_token;

fn enabled() -> TestApp {
    TestApp::builder()
        .env("VIVIFIED_BREAK_GLASS", "true")
        .build()
}

#[tokio::test]
async fn an_operator_raises_itself_to_admin_until_the_grant_ends() {
    // Production, where a PHI plugin waits for an admin's approval.
    let app = TestApp::builder()
        .production()
        .env("VIVIFIED_BREAK_GLASS", "true")
        .build();
    let mut rx = app.bus.subscribe();
    let registered = app
        .register(&phi_manifest("ehr", &[], &[]), Some(REGISTRATION_SECRET))
        .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    assert_eq!(app.record("ehr").await["approval"], "pending");
    let alice = operator_with_token(&app, "alice", "operator").await;
    // Approving what data may flow to a plugin is an admin's decision.
    let refused = app
        .post_json("/plugins/ehr/approve", Some(&alice), &json!({}))
        .await;
    assert_eq!(
        refused.json()["required_role"],
        "admin",
        "{}",
        refused.text()
    );

    let granted = app
        .post_json(
            "/break-glass",
            Some(&alice),
            &json!({"reason": "ED intake is down; INC-4711", "duration": "30m"}),
        )
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text());
    let until = app.clock_now() + std::time::Duration::from_secs(1800);
    assert_eq!(rfc3339_utc(&granted.json()["until"]), until);
    assert_eq!(granted.json()["role"], "admin");
    assert!(drain_lifecycle(&mut rx).contains(&"security.break_glass".to_owned()));

    let me = app.get("/whoami", Some(&alice)).await.json();
    assert_eq!(me["role"], "admin");
    assert_eq!(me["auth"], "break_glass");
    assert_eq!(rfc3339_utc(&me["expires_at"]), until);
    let approved = app
        .post_json("/plugins/ehr/approve", Some(&alice), &json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    assert_eq!(approved.json()["approval"], "approved");

    let grants = sealed_entries(&app, "access.break_glass").await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].entry.actor, "operator:alice");
    assert_eq!(
        grants[0].entry.details["reason"],
        "ED intake is down; INC-4711"
    );
    assert_eq!(grants[0].entry.details["until"], until.unix_timestamp());
    let under = sealed_entries(&app, "plugin.approve").await;
    assert_eq!(under[0].entry.actor, "operator:alice");
    assert_eq!(under[0].entry.details["auth"], "break_glass");

    // At its end alice is an operator again.
    app.clock.advance(time::Duration::minutes(30));
    let me = app.get("/whoami", Some(&alice)).await.json();
    assert_eq!(
        (me["role"].as_str(), me["auth"].as_str()),
        (Some("operator"), Some("token"))
    );
    let refused = app
        .post_json("/plugins/ehr/refuse", Some(&alice), &json!({"reason": "x"}))
        .await;
    assert_ne!(
        refused.status,
        StatusCode::FORBIDDEN,
        "operators may still refuse"
    );
}

#[tokio::test]
async fn it_ends_early_on_request() {
    let app = enabled();
    let alice = operator_with_token(&app, "alice", "operator").await;
    app.post_json(
        "/break-glass",
        Some(&alice),
        &json!({"reason": "restoring the on-call rota", "duration": "4h"}),
    )
    .await;
    assert_eq!(
        app.get("/whoami", Some(&alice)).await.json()["role"],
        "admin"
    );
    let ended = app.delete("/break-glass", Some(&alice)).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.text());
    assert_eq!(
        app.get("/whoami", Some(&alice)).await.json()["role"],
        "operator"
    );
    assert_eq!(
        sealed_entries(&app, "access.break_glass_end").await.len(),
        1
    );
    // Ending nothing is a no-op.
    assert_eq!(
        app.delete("/break-glass", Some(&alice)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sealed_entries(&app, "access.break_glass_end").await.len(),
        1
    );
}

#[tokio::test]
async fn off_unless_enabled_and_only_for_operators_with_a_reason() {
    let off = TestApp::dev();
    let alice = operator_with_token(&off, "alice", "operator").await;
    let body = json!({"reason": "a good enough reason", "duration": "30m"});
    let refused = off.post_json("/break-glass", Some(&alice), &body).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(refused.json()["reason"], "break_glass_disabled");

    let app = enabled();
    let viewer = operator_with_token(&app, "vera", "viewer").await;
    let refused = app.post_json("/break-glass", Some(&viewer), &body).await;
    assert_eq!(
        refused.json()["required_role"],
        "operator",
        "{}",
        refused.text()
    );
    let admin = operator_with_token(&app, "root", "admin").await;
    for bearer in [admin.as_str(), ADMIN_TOKEN] {
        let refused = app.post_json("/break-glass", Some(bearer), &body).await;
        assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(refused.json()["reason"], "break_glass_for_operators");
    }
    let alice = operator_with_token(&app, "alice", "operator").await;
    for (bad, names) in [
        (json!({"reason": "too short", "duration": "30m"}), "reason"),
        (json!({"duration": "30m"}), "reason"),
        (
            json!({"reason": "a good enough reason", "duration": "5h"}),
            "duration",
        ),
        (json!({"reason": "a good enough reason"}), "duration"),
        (
            json!({"reason": "a good enough reason", "duration": "30m", "x": 1}),
            "x",
        ),
    ] {
        let resp = app.post_json("/break-glass", Some(&alice), &bad).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(resp.text().contains(names), "{bad} → {}", resp.text());
    }
    assert_eq!(
        app.get("/whoami", Some(&alice)).await.json()["role"],
        "operator"
    );
    assert!(sealed_entries(&app, "access.break_glass").await.is_empty());
}
