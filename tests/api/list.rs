//! `GET /plugins` (admin): sorted by id, paged with `?limit=&after=`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, assert_record_shape, keys, sorted};

fn ids(body: &Value) -> Vec<String> {
    body["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("plugins is an array: {body}"))
        .iter()
        .map(|p| p["plugin_id"].as_str().expect("plugin_id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_admin_lists_every_plugin_sorted_by_id() {
    let app = TestApp::dev();
    let resp = app.get("/plugins", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["plugins"], json!([]));
    for id in ["zeta", "alpha", "mid-1", "beta", "mid-0", "a"] {
        app.register_ok(id).await;
    }
    let beta = app.register_ok("beta-2").await;
    app.heartbeat(
        "beta-2",
        Some(&beta),
        Some(&json!({ "health": "degraded" })),
    )
    .await;
    let resp = app.get("/plugins", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let body = resp.json();
    assert_eq!(keys(&body), sorted(&["next_after", "plugins"]), "{body}");
    assert_eq!(
        ids(&body),
        ["a", "alpha", "beta", "beta-2", "mid-0", "mid-1", "zeta"]
    );
    assert!(body["next_after"].is_null(), "a short page is the last");
    for p in body["plugins"].as_array().expect("array") {
        assert_record_shape(p);
        assert_eq!(p["manifest"]["id"], p["plugin_id"]);
    }
    let b2 = &body["plugins"][3];
    assert_eq!(b2["status"], "active");
    assert_eq!(b2["health"], "degraded");
    assert!(b2["last_heartbeat"].is_string());
    let z = &body["plugins"][6];
    assert_eq!(z["status"], "registered");
    assert_eq!(z["health"], "unknown");
    assert!(z["last_heartbeat"].is_null());
}

#[tokio::test]
async fn pages_follow_next_after() {
    let app = TestApp::dev();
    for id in ["p-e", "p-c", "p-a", "p-d", "p-b"] {
        app.register_ok(id).await;
    }
    let mut seen = Vec::new();
    let mut uri = "/plugins?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let resp = app.get(&uri, Some(ADMIN_TOKEN)).await;
        assert_eq!(resp.status, StatusCode::OK, "{uri}: {}", resp.text());
        let body = resp.json();
        let page = ids(&body);
        assert!(page.len() <= 2, "{uri}: {page:?}");
        seen.extend(page.clone());
        pages += 1;
        assert!(pages <= 4, "paging terminates");
        match body["next_after"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), page.last().map(String::as_str));
                uri = format!("/plugins?limit=2&after={next}");
            }
            None => break,
        }
    }
    assert_eq!(seen, ["p-a", "p-b", "p-c", "p-d", "p-e"]);

    let resp = app.get("/plugins?limit=2", Some(ADMIN_TOKEN)).await;
    let body = resp.json();
    assert_eq!(ids(&body), ["p-a", "p-b"]);
    assert_eq!(body["next_after"], "p-b");
    let resp = app.get("/plugins?after=p-b", Some(ADMIN_TOKEN)).await;
    assert_eq!(ids(&resp.json()), ["p-c", "p-d", "p-e"]);
    let resp = app
        .get("/plugins?after=p-c&limit=1", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(ids(&resp.json()), ["p-d"]);
    // `after` need not be a registered id.
    let resp = app.get("/plugins?after=p-bb", Some(ADMIN_TOKEN)).await;
    assert_eq!(ids(&resp.json()), ["p-c", "p-d", "p-e"]);
    let resp = app.get("/plugins?after=z", Some(ADMIN_TOKEN)).await;
    let body = resp.json();
    assert_eq!(body["plugins"], json!([]));
    assert!(body["next_after"].is_null());
    let resp = app.get("/plugins?limit=1000", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(ids(&resp.json()).len(), 5);
}

#[tokio::test]
async fn a_bad_limit_or_after_is_400_invalid_body() {
    let app = TestApp::dev();
    for q in [
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=abc",
        "limit=1.5",
        "limit=99999999999999999999999",
        "after=Not_An_Id",
        "after=a%20b",
    ] {
        let resp = app.get(&format!("/plugins?{q}"), Some(ADMIN_TOKEN)).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
}

#[tokio::test]
async fn listing_needs_the_admin_token() {
    let app = TestApp::dev();
    let token = app.register_ok("nosy").await;
    let resp = app.get("/plugins", None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins", Some("garbage-garbage-garbage")).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins", Some(&token)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    // 401/403 come before 400.
    let resp = app.get("/plugins?limit=0", None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.get("/plugins?limit=0", Some(&token)).await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn an_expired_plugin_token_on_the_list_is_401() {
    let app = TestApp::builder().env("VIVIFIED_TOKEN_TTL", "1s").build();
    let token = app.register_ok("expired-lister").await;
    app.clock.advance(time::Duration::seconds(30));
    let resp = app.get("/plugins", Some(&token)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
}
