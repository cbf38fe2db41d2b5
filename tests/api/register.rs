//! `POST /plugins/register` in dev mode: success shape, bad bodies, invalid manifests,
//! duplicates.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Value, json};
use vivified_domain::ManifestValidator;

use crate::helpers::{
    ADMIN_TOKEN, TOKEN_FIELDS, TestApp, assert_error, assert_record_shape, example, keys, manifest,
    rfc3339_utc, sorted,
};

#[tokio::test]
async fn register_answers_200_with_token_expiry_and_interval() {
    let app = TestApp::dev();
    let now = vivified_ports::Clock::now(&*app.clock);
    let resp = app.register(&example("user-management.json"), None).await;
    assert_eq!(resp.status, StatusCode::OK, "200, not 201: {}", resp.text());
    let body = resp.json();
    assert_eq!(keys(&body), sorted(TOKEN_FIELDS), "{body}");
    assert_eq!(body["status"], "registered");
    assert_eq!(body["plugin_id"], "user-management");
    let token = body["token"].as_str().expect("token is a string");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let expires_at = rfc3339_utc(&body["expires_at"]);
    let expected = now + time::Duration::hours(24);
    assert!(
        (expires_at - expected).abs() <= time::Duration::seconds(1),
        "default TTL is 24 h: {expires_at} vs {expected}"
    );
    assert_eq!(body["heartbeat_interval_secs"], 10);
    assert_eq!(body["heartbeat_interval_ms"], 10_000);
}

#[tokio::test]
async fn the_answer_follows_the_configured_ttl_and_interval() {
    let app = TestApp::builder()
        .env("VIVIFIED_TOKEN_TTL", "1h")
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "1500ms")
        .build();
    let now = vivified_ports::Clock::now(&*app.clock);
    let resp = app.register(&manifest("interval"), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let body = resp.json();
    let expires_at = rfc3339_utc(&body["expires_at"]);
    assert!((expires_at - (now + time::Duration::hours(1))).abs() <= time::Duration::seconds(1));
    assert_eq!(body["heartbeat_interval_ms"], 1500);
    assert_eq!(body["heartbeat_interval_secs"], 1);
}

#[tokio::test]
async fn a_registered_plugin_is_stored_as_sent() {
    let app = TestApp::dev();
    let mut sent = example("user-management.json");
    sent["subscriptions"] = json!(["user.created"]);
    let resp = app.register(&sent, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let record = app.record("user-management").await;
    assert_record_shape(&record);
    assert_eq!(record["plugin_id"], "user-management");
    assert_eq!(
        record["manifest"], sent,
        "manifest kept as sent, unknown members too"
    );
    assert_eq!(record["status"], "registered");
    assert_eq!(record["health"], "unknown");
    assert_eq!(record["enabled"], true);
    assert!(record["disabled_reason"].is_null());
    assert!(record["last_heartbeat"].is_null());
}

#[tokio::test]
async fn every_valid_example_registers() {
    let app = TestApp::dev();
    for name in [
        "minimal.json",
        "user-management.json",
        "ehr-connector.json",
        "email-gateway.json",
    ] {
        let m = example(name);
        let resp = app.register(&m, None).await;
        assert_eq!(resp.status, StatusCode::OK, "{name}: {}", resp.text());
        assert_eq!(resp.json()["plugin_id"], m["id"]);
    }
}

#[tokio::test]
async fn json_content_type_parameters_and_suffixes_are_accepted() {
    let app = TestApp::dev();
    for (id, ct) in [
        ("ct-charset", "application/json; charset=utf-8"),
        ("ct-upper", "Application/JSON"),
        ("ct-suffix", "application/vnd.vivified+json"),
    ] {
        let body = serde_json::to_vec(&manifest(id)).expect("json");
        let resp = app
            .post_raw("/plugins/register", None, Some(ct), body)
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{ct}: {}", resp.text());
    }
}

#[tokio::test]
async fn malformed_json_is_400_invalid_body() {
    let app = TestApp::dev();
    for raw in [
        "{\"id\": \"broken\", ",
        "{id: 1}",
        "not json",
        "{\"id\": \"x\"} trailing",
    ] {
        let resp = app
            .post_raw(
                "/plugins/register",
                None,
                Some("application/json"),
                raw.to_owned(),
            )
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(resp.json().get("violations").is_none());
    }
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_400_invalid_body() {
    let app = TestApp::dev();
    for v in [
        json!([manifest("in-array")]),
        json!(null),
        json!("user-management"),
        json!(42),
        json!(true),
    ] {
        let resp = app.register(&v, None).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    }
}

#[tokio::test]
async fn an_empty_body_is_400_invalid_body() {
    let app = TestApp::dev();
    let resp = app
        .post_raw("/plugins/register", None, Some("application/json"), "")
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
    let resp = app.post_raw("/plugins/register", None, None, "").await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
}

fn violation_set(v: &Value) -> BTreeSet<(String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("violations is an array: {v}"))
        .iter()
        .map(|x| {
            let s = |k: &str| {
                x[k].as_str()
                    .unwrap_or_else(|| panic!("`{k}` is a string in {x}"))
                    .to_owned()
            };
            assert!(!s("message").is_empty(), "a message: {x}");
            assert!(
                s("path").is_empty() || s("path").starts_with('/'),
                "a JSON pointer: {x}"
            );
            (s("path"), s("code"))
        })
        .collect()
}

/// Posts `m`, asserts 400 `invalid_manifest` with the documented body, and that the
/// violations are exactly the validator's (all of them, not the first).
async fn assert_invalid(app: &TestApp, m: &Value) -> BTreeSet<(String, String)> {
    let resp = app.register(m, None).await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
    let body = resp.json();
    assert_eq!(body["detail"], "Invalid manifest");
    let got = violation_set(&body["violations"]);
    let expected: BTreeSet<(String, String)> = ManifestValidator::new()
        .expect("schema")
        .validate(m)
        .expect_err("the manifest is invalid")
        .into_iter()
        .map(|v| (v.path, v.code))
        .collect();
    assert_eq!(got, expected, "every violation is listed");
    got
}

fn has(set: &BTreeSet<(String, String)>, path: &str, code: &str) -> bool {
    set.contains(&(path.to_owned(), code.to_owned()))
}

#[tokio::test]
async fn schema_errors_are_all_listed_with_path_and_code() {
    let app = TestApp::dev();
    let got = assert_invalid(&app, &example("invalid/schema-errors.json")).await;
    assert!(got.len() >= 5, "every violation, not the first: {got:?}");
    assert!(has(&got, "/id", "pattern"), "{got:?}");
    assert!(has(&got, "/version", "pattern"), "{got:?}");
    assert!(has(&got, "/compliance", "required"), "{got:?}");
    assert!(
        has(&got, "/security/authentication_required", "required"),
        "{got:?}"
    );
    assert!(
        got.iter().any(|(p, _)| p.starts_with("/contracts")),
        "{got:?}"
    );
    assert!(got.iter().any(|(p, _)| p.starts_with("/traits")), "{got:?}");
    // Nothing was stored under the invalid id.
    let resp = app.get("/plugins?limit=10", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.json()["plugins"], json!([]));
}

#[tokio::test]
async fn domain_rule_violations_are_all_listed() {
    let app = TestApp::dev();
    let phi = assert_invalid(&app, &example("invalid/phi-without-encryption.json")).await;
    assert!(phi.len() >= 3, "{phi:?}");
    assert!(
        phi.iter().any(|(_, c)| c == "phi_requires_encryption"),
        "{phi:?}"
    );
    let ext = assert_invalid(&app, &example("invalid/external-service-bad-domains.json")).await;
    assert!(
        ext.len() >= 6,
        "one per bad domain, dependency and endpoint: {ext:?}"
    );
    assert!(
        ext.iter().any(|(p, _)| p.starts_with("/allowed_domains/")),
        "{ext:?}"
    );
    assert!(
        ext.iter().any(|(p, _)| p.starts_with("/dependencies/")),
        "{ext:?}"
    );
    assert!(
        ext.iter().any(|(p, _)| p.starts_with("/endpoints/")),
        "{ext:?}"
    );
}

#[tokio::test]
async fn an_empty_object_lists_every_missing_member() {
    let app = TestApp::dev();
    let got = assert_invalid(&app, &json!({})).await;
    for member in [
        "/id",
        "/name",
        "/version",
        "/contracts",
        "/traits",
        "/security",
        "/compliance",
    ] {
        assert!(has(&got, member, "required"), "{member} in {got:?}");
    }
}

#[tokio::test]
async fn a_held_id_without_a_token_is_409_already_registered() {
    let app = TestApp::dev();
    let token = app.register_ok("dup").await;
    let before = app.record("dup").await;
    let mut other = manifest("dup");
    other["name"] = json!("Impostor");
    let resp = app.register(&other, None).await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    // The holder is untouched: same manifest, its token still works.
    assert_eq!(app.record("dup").await, before);
    let resp = app.heartbeat("dup", Some(&token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn a_held_id_with_another_plugins_or_the_admin_token_is_409() {
    let app = TestApp::dev();
    app.register_ok("holder").await;
    let other = app.register_ok("other").await;
    for bearer in [other.as_str(), ADMIN_TOKEN] {
        let resp = app.register(&manifest("holder"), Some(bearer)).await;
        assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    }
}
