//! Unknown paths (404), wrong methods (405), and the OpenAPI document (dev only).

use axum::http::{Method, StatusCode};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error};

#[tokio::test]
async fn an_unknown_path_is_404_json() {
    let app = TestApp::dev();
    for uri in [
        "/",
        "/nope",
        "/plugins/a/b",
        "/plugins/a/heartbeat/extra",
        "/admin",
        "/health/",
    ] {
        let resp = app.get(uri, Some(ADMIN_TOKEN)).await;
        assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
        let resp = app.request(Method::POST, uri, None, None).await;
        assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_json() {
    let app = TestApp::dev();
    for (method, uri) in [
        (Method::DELETE, "/health"),
        (Method::POST, "/health"),
        (Method::POST, "/ready"),
        (Method::POST, "/plugins"),
        (Method::DELETE, "/plugins"),
        (Method::PUT, "/plugins/some-id"),
        (Method::PATCH, "/plugins/some-id"),
        (Method::GET, "/plugins/some-id/heartbeat"),
        (Method::DELETE, "/plugins/some-id/token"),
        (Method::PUT, "/plugins/register"),
    ] {
        let resp = app
            .request(method.clone(), uri, Some(ADMIN_TOKEN), None)
            .await;
        assert_error(&resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_in_dev_mode() {
    let app = TestApp::dev();
    let resp = app.get("/openapi.json", None).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let doc = resp.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "an OpenAPI 3 document"
    );
    assert!(doc["paths"].is_object());
    // Every schema's properties are schemas (objects), never example values.
    fn schemas_only(v: &serde_json::Value, at: &str) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    for (name, schema) in props {
                        assert!(
                            schema.is_object() || schema.is_boolean(),
                            "{at}/properties/{name} is not a schema: {schema}"
                        );
                    }
                }
                for (k, child) in map {
                    schemas_only(child, &format!("{at}/{k}"));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    schemas_only(child, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    schemas_only(&doc, "");
}

#[tokio::test]
async fn production_mode_serves_no_api_docs() {
    let app = TestApp::production();
    let resp = app.get("/openapi.json", None).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    let resp = app.get("/openapi.json", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
}
