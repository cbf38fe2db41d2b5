//! `DELETE /plugins/{id}`: the admin or the plugin itself; the token dies, the id is free.

use axum::http::StatusCode;

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, manifest};

#[tokio::test]
async fn the_admin_deregisters_with_204_and_the_token_stops_working() {
    let app = TestApp::dev();
    let token = app.register_ok("evicted").await;
    let resp = app.delete("/plugins/evicted", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.text());
    assert!(resp.body.is_empty(), "204 has no body");
    let resp = app.heartbeat("evicted", Some(&token), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins/evicted", Some(&token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.refresh("evicted", Some(&token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins/evicted", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    let resp = app.delete("/plugins/evicted", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_plugin_deregisters_itself_with_204() {
    let app = TestApp::dev();
    let token = app.register_ok("leaver").await;
    let resp = app.delete("/plugins/leaver", Some(&token)).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.text());
    assert!(resp.body.is_empty());
    let resp = app.heartbeat("leaver", Some(&token), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.delete("/plugins/leaver", Some(&token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins/leaver", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_id_is_free_again_after_deregistration() {
    let app = TestApp::dev();
    let old = app.register_ok("phoenix").await;
    let first = app.record("phoenix").await;
    let resp = app.delete("/plugins/phoenix", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    app.clock.advance(time::Duration::minutes(1));
    let resp = app.register(&manifest("phoenix"), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let new = resp.token();
    let second = app.record("phoenix").await;
    assert_ne!(
        second["registered_at"], first["registered_at"],
        "a new registration"
    );
    assert_eq!(second["status"], "registered");
    let resp = app.heartbeat("phoenix", Some(&old), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.heartbeat("phoenix", Some(&new), None).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn the_admin_gets_404_for_an_unknown_id() {
    let app = TestApp::dev();
    for id in ["never-was", "Not_An_Id"] {
        let resp = app
            .delete(&format!("/plugins/{id}"), Some(ADMIN_TOKEN))
            .await;
        assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn deregistration_refusals_leave_the_plugin_registered() {
    let app = TestApp::dev();
    let first = app.register_ok("sturdy").await;
    let other = app.register_ok("vandal").await;
    let resp = app.delete("/plugins/sturdy", None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .delete("/plugins/sturdy", Some("garbage-garbage-garbage"))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.delete("/plugins/sturdy", Some(&other)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    let current = app.refresh("sturdy", Some(&first)).await.token();
    let resp = app.delete("/plugins/sturdy", Some(&first)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.heartbeat("sturdy", Some(&current), None).await;
    assert_eq!(resp.status, StatusCode::OK, "still registered");
}
