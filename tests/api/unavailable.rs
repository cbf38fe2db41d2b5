//! A failing store: 503 `unavailable` with a clear body, never 500, never internals.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::json;
use vivified_ports::StoreError;
use vivified_ports::store::MockPluginStore;

use crate::helpers::{ADMIN_TOKEN, TestApp, TestResponse, assert_error, manifest};

const INNER: &str = "connection to postgres://vivified:hunter2@10.1.2.3/db refused (os error 111)";

fn down() -> StoreError {
    StoreError::Unavailable(INNER.into())
}

fn app_over(store: MockPluginStore) -> TestApp {
    TestApp::builder().store(Arc::new(store)).build()
}

fn assert_unavailable(resp: &TestResponse) {
    assert_error(resp, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let text = resp.text();
    for inner in ["hunter2", "postgres", "10.1.2.3", "refused", "os error"] {
        assert!(!text.contains(inner), "internals leaked ({inner}): {text}");
    }
}

#[tokio::test]
async fn ready_is_503_with_a_json_body_when_the_store_does_not_answer() {
    let mut store = MockPluginStore::new();
    store.expect_ping().returning(|| Err(down()));
    let app = app_over(store);
    let resp = app.get("/ready", None).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let body = resp.json();
    assert_eq!(body["status"], "unavailable", "{body}");
    for inner in ["hunter2", "postgres", "10.1.2.3", "refused"] {
        assert!(!resp.text().contains(inner), "{}", resp.text());
    }
    // Liveness does not depend on the store.
    let resp = app.get("/health", None).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn register_is_503_when_the_store_cannot_be_read() {
    // With a plugin token the registration may be a re-registration: the record is read.
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Err(down()));
    let app = app_over(store);
    let token = app.forge("blocked").await;
    let resp = app.register(&manifest("blocked"), Some(&token)).await;
    assert_unavailable(&resp);
}

#[tokio::test]
async fn register_is_503_when_the_store_cannot_insert() {
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Ok(None));
    store.expect_insert().returning(|_| Err(down()));
    let app = app_over(store);
    let resp = app.register(&manifest("blocked"), None).await;
    assert_unavailable(&resp);
}

#[tokio::test]
async fn heartbeat_is_503_when_the_store_fails() {
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .returning(|_, _, _, _, _| Err(down()));
    let app = app_over(store);
    let token = app.forge("pulse").await;
    let resp = app
        .heartbeat("pulse", Some(&token), Some(&json!({ "health": "healthy" })))
        .await;
    assert_unavailable(&resp);
}

#[tokio::test]
async fn list_is_503_when_the_store_fails() {
    let mut store = MockPluginStore::new();
    store.expect_list().returning(|_, _| Err(down()));
    let app = app_over(store);
    let resp = app.get("/plugins?limit=5", Some(ADMIN_TOKEN)).await;
    assert_unavailable(&resp);
}

#[tokio::test]
async fn get_refresh_and_deregister_are_503_when_the_store_fails() {
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Err(down()));
    store.expect_delete().returning(|_, _| Err(down()));
    let app = app_over(store);
    let token = app.forge("failing").await;
    for (method, uri, bearer) in [
        (Method::GET, "/plugins/failing", ADMIN_TOKEN),
        (Method::GET, "/plugins/failing", token.as_str()),
        (Method::POST, "/plugins/failing/token", token.as_str()),
        (Method::DELETE, "/plugins/failing", ADMIN_TOKEN),
        (Method::DELETE, "/plugins/failing", token.as_str()),
    ] {
        let resp = app.request(method.clone(), uri, Some(bearer), None).await;
        assert_unavailable(&resp);
    }
}

#[tokio::test]
async fn auth_failures_do_not_touch_the_failing_store() {
    // A missing credential is 401 from the request alone; the mock has no
    // expectations, so any store call would panic the test.
    let app = app_over(MockPluginStore::new());
    let resp = app.heartbeat("x-plugin", None, None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins", None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app
        .get("/plugins/x-plugin", Some("garbage-garbage-garbage"))
        .await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}
