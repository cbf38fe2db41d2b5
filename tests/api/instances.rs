//! Instances: several running copies of one plugin, each with its own token and
//! heartbeat. Re-registering or refreshing one never revokes another's token; a new
//! instance needs a current token of the plugin or an enrollment; a plugin token
//! deregisters its own instance; `VIVIFIED_MAX_INSTANCES` bounds a flood.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, manifest, sealed_entries};

async fn register_instance(
    app: &TestApp,
    id: &str,
    instance: &str,
    bearer: Option<&str>,
) -> crate::helpers::TestResponse {
    app.post_json(
        &format!("/plugins/register?instance={instance}"),
        bearer,
        &manifest(id),
    )
    .await
}

fn instance_ids(record: &Value) -> Vec<&str> {
    record["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn instances_have_their_own_tokens_and_heartbeats() {
    let app = TestApp::dev();
    let first = app.register(&manifest("multi"), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["instance_id"], "default");
    let a = first.token();
    // A sibling's current token admits a new instance.
    let second = register_instance(&app, "multi", "pod-b", Some(&a)).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    assert_eq!(second.json()["instance_id"], "pod-b");
    let b = second.token();
    for token in [&a, &b] {
        let hb = app
            .heartbeat("multi", Some(token), Some(&json!({"health": "healthy"})))
            .await;
        assert_eq!(hb.status, StatusCode::OK, "{}", hb.text());
    }
    // Re-registering one instance (its own token, no name) rotates its token only.
    let again = app.register(&manifest("multi"), Some(&a)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.json()["instance_id"], "default");
    let a2 = again.token();
    assert_error(
        &app.heartbeat("multi", Some(&a), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        app.heartbeat("multi", Some(&b), None).await.status,
        StatusCode::OK
    );
    // Refreshing one never revokes the other.
    let refreshed = app.refresh("multi", Some(&b)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    assert_eq!(refreshed.json()["instance_id"], "pod-b");
    let b2 = refreshed.token();
    assert_eq!(
        app.heartbeat("multi", Some(&a2), None).await.status,
        StatusCode::OK
    );
    let hb = app
        .heartbeat("multi", Some(&b2), Some(&json!({"health": "unhealthy"})))
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    // The record lists both, with their own health; the plugin's is theirs together.
    let record = app.record("multi").await;
    assert_eq!(instance_ids(&record), ["default", "pod-b"]);
    assert_eq!(record["status"], "active");
    assert_eq!(record["health"], "degraded", "one healthy, one unhealthy");
    let pod_b = &record["instances"][1];
    assert_eq!(pod_b["health"], "unhealthy");
    assert_eq!(pod_b["status"], "active");
    assert_eq!(pod_b["token_revoked"], false);
    assert!(
        !record.to_string().contains("jti"),
        "token ids never leave the store: {record}"
    );
    // An instance that exists is its holder's: another instance's token cannot take it.
    assert_error(
        &register_instance(&app, "multi", "pod-b", Some(&a2)).await,
        StatusCode::CONFLICT,
        "already_registered",
    );
    // Without a credential (dev mode) a held id gets no new instance.
    assert_error(
        &register_instance(&app, "multi", "pod-c", None).await,
        StatusCode::CONFLICT,
        "already_registered",
    );
    let audited = sealed_entries(&app, "plugin.reregister").await;
    assert!(
        audited
            .iter()
            .any(|e| e.entry.details["instance"] == "pod-b"
                && e.entry.details["new_instance"] == true),
        "the admission is audited with its instance: {audited:?}"
    );
}

#[tokio::test]
async fn a_plugin_token_deregisters_its_own_instance_and_the_last_one_the_plugin() {
    let app = TestApp::dev();
    let a = app.register_ok("leaving").await;
    let b = register_instance(&app, "leaving", "b", Some(&a))
        .await
        .token();
    let gone = app.delete("/plugins/leaving", Some(&b)).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text());
    assert_error(
        &app.heartbeat("leaving", Some(&b), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let record = app.record("leaving").await;
    assert_eq!(
        instance_ids(&record),
        ["default"],
        "the plugin stays with its other instance"
    );
    assert_eq!(
        app.heartbeat("leaving", Some(&a), None).await.status,
        StatusCode::OK
    );
    let gone = app.delete("/plugins/leaving", Some(&a)).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text());
    let missing = app.get("/plugins/leaving", Some(ADMIN_TOKEN)).await;
    assert_eq!(
        missing.status,
        StatusCode::NOT_FOUND,
        "its last instance took it along"
    );
}

#[tokio::test]
async fn instances_are_bounded_and_named_strictly() {
    let app = TestApp::builder()
        .env("VIVIFIED_MAX_INSTANCES", "2")
        .build();
    let a = app.register_ok("crowd").await;
    let b = register_instance(&app, "crowd", "b", Some(&a)).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    let c = register_instance(&app, "crowd", "c", Some(&a)).await;
    assert_error(&c, StatusCode::CONFLICT, "conflict");
    assert_eq!(c.json()["reason"], "too_many_instances", "{}", c.text());
    assert_eq!(instance_ids(&app.record("crowd").await), ["b", "default"]);
    for bad in ["-x", "a%20b", "x%2Fy", &"x".repeat(65)] {
        let resp = register_instance(&app, "crowd", bad, Some(&a)).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
    let resp = app
        .post_json("/plugins/register?instanse=x", Some(&a), &manifest("crowd"))
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
}

#[tokio::test]
async fn revocation_by_time_takes_every_instance_issued_before_it() {
    let app = TestApp::dev();
    let a = app.register_ok("revoked-pair").await;
    app.clock.advance(time::Duration::seconds(10));
    let cut = app
        .clock_now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    app.clock.advance(time::Duration::seconds(10));
    let b = register_instance(&app, "revoked-pair", "b", Some(&a))
        .await
        .token();
    // Only the instance whose token was issued before the instant loses it.
    let revoke = |at: Value| {
        let app = &app;
        async move {
            let resp = app
                .post_json(
                    "/plugins/revoked-pair/revoke-before",
                    Some(ADMIN_TOKEN),
                    &json!({ "at": at }),
                )
                .await;
            assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        }
    };
    revoke(json!(cut)).await;
    assert_error(
        &app.heartbeat("revoked-pair", Some(&a), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        app.heartbeat("revoked-pair", Some(&b), None).await.status,
        StatusCode::OK
    );
    // An enrollment re-registers the instance whose token was revoked; the other keeps
    // its token.
    let enrollment = app
        .post_json(
            "/enrollments",
            Some(ADMIN_TOKEN),
            &json!({"plugin_id": "revoked-pair"}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = register_instance(&app, "revoked-pair", "default", Some(&enrollment)).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text());
    assert_eq!(
        app.heartbeat("revoked-pair", Some(&back.token()), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.heartbeat("revoked-pair", Some(&b), None).await.status,
        StatusCode::OK
    );
    // "now" takes every instance.
    revoke(json!("now")).await;
    let record = app.record("revoked-pair").await;
    assert_eq!(instance_ids(&record), ["b", "default"]);
    assert!(
        record["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["token_revoked"] == true),
        "{record}"
    );
    for token in [b, back.token()] {
        assert_error(
            &app.heartbeat("revoked-pair", Some(&token), None).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
}
