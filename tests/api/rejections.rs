//! Rejected token use is audited — at most once per plugin, reason and minute, so a
//! flood of bad requests cannot fill the audit log.

use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use serde_json::json;
use time::Duration;
use vivified_ports::{AuditOutcome, AuditQuery};

use crate::helpers::{OTHER_JWT_SECRET, TestApp};

async fn rejected(app: &TestApp) -> Vec<(String, String, String)> {
    app.audit
        .seal_all(StdDuration::from_secs(5))
        .await
        .expect("seal");
    app.audit
        .log
        .query(&AuditQuery {
            limit: 1000,
            action: Some("token.rejected".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("query")
        .into_iter()
        .map(|e| {
            assert_eq!(e.entry.outcome, AuditOutcome::Denied);
            (e.entry.actor, e.entry.target, e.entry.reason)
        })
        .collect()
}

#[tokio::test]
async fn a_flood_of_bad_tokens_is_audited_once_per_plugin_reason_and_minute() {
    let app = TestApp::dev();
    let old = app.register_ok("rej-a").await;
    let resp = app.refresh("rej-a", Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK);
    // Signed with a key the core does not know.
    let forged = app
        .forge_with(
            OTHER_JWT_SECRET,
            "rej-a",
            vivified_ports::Clock::now(&*app.clock),
        )
        .await;
    for _ in 0..50 {
        let resp = app
            .heartbeat("rej-a", Some(&old), Some(&json!({"health": "healthy"})))
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        let resp = app.get("/plugins/rej-a", Some(&forged)).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    let mut got = rejected(&app).await;
    got.sort();
    assert_eq!(
        got,
        [
            (
                "anonymous".to_owned(),
                "-".to_owned(),
                "invalid_token".to_owned()
            ),
            (
                "plugin:rej-a".to_owned(),
                "rej-a".to_owned(),
                "revoked_token".to_owned()
            ),
        ]
    );

    app.clock.advance(Duration::seconds(61));
    let resp = app
        .heartbeat("rej-a", Some(&old), Some(&json!({"health": "healthy"})))
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        rejected(&app).await.len(),
        3,
        "a new minute, a new entry for the same plugin and reason"
    );
}

#[tokio::test]
async fn introspecting_someone_elses_bad_token_is_not_a_rejection_of_the_caller() {
    let app = TestApp::dev();
    let caller = app.register_ok("rej-caller").await;
    let resp = app
        .post_json(
            "/tokens/introspect",
            Some(&caller),
            &json!({"token": "not-a-token"}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["active"], false);
    assert!(rejected(&app).await.is_empty());
}
