//! Operators across replicas: the real `vivified-server` binary in production mode,
//! two replicas on one Postgres database. An operator created on one replica works on
//! the other; a token revoked on one is refused by the other at its next request.
//!
//! Gated like the other Postgres tests: runs when `VIVIFIED_TEST_POSTGRES_URL` is set,
//! fails when `CI` is set without it; creates and drops its own database.

mod common;

use common::{client, vivified};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vivified_test_support::fixtures::answer;
use vivified_test_support::postgres::ScratchDb;

const JWT: &str = "Zx8Cv5Bn2Mq7Wr4Et1Yu9Io6Pa3Sd0Fg-operators";
const ADMIN: &str = "adm-operators-8f3k2m9q4z7x1c5v";
const REGISTRATION: &str = "reg-operators-5t8y1u4i7o0p3a6s";
const AUDIT_KEY: &str = "aud-4Gh7Jk1Lz5Xc9Vb3Nm6Qw2Er8Ty0Ui-operators";

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url).bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    answer(req.send().await.expect("the core answers")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_created_on_one_replica_is_revoked_on_the_other_at_once() {
    let Some(db) = ScratchDb::create("vivified_ops").await else {
        return;
    };
    let spawn = vivified()
        .env("VIVIFIED_MODE", "production")
        .env("VIVIFIED_STORE", db.url())
        .env("VIVIFIED_DB_MAX_CONNECTIONS", "4")
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("VIVIFIED_REGISTRATION_SECRET", REGISTRATION)
        .env("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true")
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY);
    let http = client();
    let (mut a, mut b) = tokio::join!(spawn.start(), spawn.start());
    use reqwest::Method;

    let (status, body) = call(
        &http,
        Method::POST,
        a.url("/operators"),
        ADMIN,
        Some(json!({"name": "alice", "role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(
        &http,
        Method::POST,
        a.url("/operators/alice/tokens"),
        ADMIN,
        Some(json!({"label": "on A"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let prefix = body["prefix"].as_str().unwrap().to_owned();

    // Used on B, which never saw it created.
    let (status, me) = call(&http, Method::GET, b.url("/whoami"), &token, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "alice");
    let (status, body) = call(&http, Method::GET, b.url("/plugins"), &token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Warm on A too, then revoke on B.
    let (status, _) = call(&http, Method::GET, a.url("/plugins"), &token, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &http,
        Method::DELETE,
        b.url(&format!("/operators/alice/tokens/{prefix}")),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // A refuses it at the very next request.
    let (status, body) = call(&http, Method::GET, a.url("/plugins"), &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["reason"], "invalid_token");

    // A replica started while a named admin exists warns that the bootstrap token is
    // still set; A and B, started before alice existed, did not.
    let c = spawn.start().await;
    let warning = "the bootstrap admin) is still set although named admins exist";
    c.wait_stdout(std::time::Duration::from_secs(10), |out| {
        out.contains(warning)
    })
    .await;
    assert!(!a.stdout().contains(warning), "{}", a.stdout());
    drop(c);

    // Deleting the operator on A ends a second token of it on B.
    let (_, body) = call(
        &http,
        Method::POST,
        b.url("/operators/alice/tokens"),
        ADMIN,
        Some(json!({})),
    )
    .await;
    let second = body["token"].as_str().unwrap().to_owned();
    let (status, _) = call(&http, Method::GET, b.url("/whoami"), &second, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &http,
        Method::DELETE,
        a.url("/operators/alice"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&http, Method::GET, b.url("/whoami"), &second, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The audit trail, read on A, names alice as the one who revoked on B (once the
    // entry is sealed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = call(
            &http,
            Method::GET,
            a.url("/audit?action=operator.token.revoke"),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if let Some(entry) = body["entries"].as_array().and_then(|e| e.first()) {
            assert_eq!(entry["actor"], "operator:alice", "{entry}");
            assert_eq!(entry["details"]["credential"], prefix.as_str(), "{entry}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation was never sealed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(a.stop(std::time::Duration::from_secs(5)).success());
    assert!(b.stop(std::time::Duration::from_secs(5)).success());
    db.drop_db().await;
}
