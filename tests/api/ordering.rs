//! The order of checks, on every authenticated route: 401 → 403 → 404.

use axum::http::{Method, StatusCode};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error};

#[tokio::test]
async fn unknown_ids_answer_401_then_403_then_404() {
    let app = TestApp::dev();
    let a = app.register_ok("known").await;
    for method in [Method::GET, Method::DELETE] {
        let uri = "/plugins/unknown-id";
        let resp = app.request(method.clone(), uri, None, None).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        let resp = app
            .request(method.clone(), uri, Some("garbage-garbage-garbage"), None)
            .await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        let resp = app.request(method.clone(), uri, Some(&a), None).await;
        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
        let resp = app.request(method, uri, Some(ADMIN_TOKEN), None).await;
        assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    }
    for uri in ["/plugins/unknown-id/heartbeat", "/plugins/unknown-id/token"] {
        let resp = app.request(Method::POST, uri, None, None).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        let resp = app.request(Method::POST, uri, Some(&a), None).await;
        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
        let resp = app
            .request(Method::POST, uri, Some(ADMIN_TOKEN), None)
            .await;
        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    }
}

#[tokio::test]
async fn an_expired_token_is_401_wherever_it_is_used() {
    let app = TestApp::builder().env("VIVIFIED_TOKEN_TTL", "1s").build();
    let a = app.register_ok("expiring").await;
    app.register_ok("bystander").await;
    app.clock.advance(time::Duration::seconds(30));
    for (method, uri) in [
        (Method::GET, "/plugins/bystander"),
        (Method::GET, "/plugins/unknown-id"),
        (Method::DELETE, "/plugins/bystander"),
        (Method::POST, "/plugins/bystander/heartbeat"),
        (Method::POST, "/plugins/bystander/token"),
        (Method::GET, "/plugins"),
    ] {
        let resp = app.request(method, uri, Some(&a), None).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn a_revoked_token_is_401_even_on_another_plugins_routes() {
    // "a well-signed token whose plugin or jti is gone is 401": revocation is part of
    // authentication, so it is checked before whose resource the path names.
    let app = TestApp::dev();
    let old = app.register_ok("rotated").await;
    app.register_ok("neighbour").await;
    let resp = app.refresh("rotated", Some(&old)).await;
    assert_eq!(resp.status, StatusCode::OK);
    for (method, uri) in [
        (Method::GET, "/plugins/neighbour"),
        (Method::GET, "/plugins/unknown-id"),
        (Method::DELETE, "/plugins/neighbour"),
        (Method::POST, "/plugins/neighbour/heartbeat"),
        (Method::POST, "/plugins/neighbour/token"),
    ] {
        let resp = app.request(method.clone(), uri, Some(&old), None).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn the_token_of_a_deregistered_plugin_is_401_on_admin_routes() {
    // Its plugin is gone, so it authenticates nobody: 401, not "a plugin token on an
    // admin route" (403).
    let app = TestApp::dev();
    let token = app.register_ok("departed").await;
    let resp = app.delete("/plugins/departed", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let resp = app.get("/plugins", Some(&token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_current_plugin_token_on_an_admin_route_is_403() {
    let app = TestApp::dev();
    let token = app.register_ok("current").await;
    let resp = app.get("/plugins", Some(&token)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
}
