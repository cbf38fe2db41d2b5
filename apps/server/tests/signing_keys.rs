//! Plugin tokens signed with Ed25519 keys (`VIVIFIED_SIGNING_KEYS`), their public halves
//! at `/.well-known/jwks.json`, rotation with overlap, and the refusals of keys that
//! cannot be used — through the real binary.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TempDir, client, repo_path, vivified};
use reqwest::StatusCode;
use serde_json::Value;
use vivified_adapters::jwt::generate_ed25519_pem;

const ADMIN: &str = "adm-8f3k2j5h7g9d1s-signing";
const REGISTRATION: &str = "reg-2m4n6b8v0c1x3z-signing";
const AUDIT_KEY: &str = "aud-7Hn3Kq9Wz2Xc5Vb8Nm1Lp4Rt6Yu0Io-signing";

fn manifest() -> Value {
    let text = std::fs::read_to_string(repo_path("schemas/examples/user-management.json"))
        .expect("the example manifest");
    serde_json::from_str(&text).expect("JSON")
}

/// A production core signing with the key files `keys` (no JWT secret at all).
fn production(keys: &[&std::path::Path]) -> common::Spawn {
    let list: Vec<String> = keys.iter().map(|p| p.display().to_string()).collect();
    vivified()
        .env("VIVIFIED_MODE", "production")
        .env("VIVIFIED_SIGNING_KEYS", &list.join(","))
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("VIVIFIED_REGISTRATION_SECRET", REGISTRATION)
        .env("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true")
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY)
        .env("VIVIFIED_STORE", "memory")
}

fn header(token: &str) -> Value {
    let first = token.split('.').next().expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).expect("base64url")).expect("JSON")
}

async fn jwks(http: &reqwest::Client, server: &common::Server) -> (Value, String) {
    let resp = http
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cache = resp.headers()["cache-control"].to_str().unwrap().to_owned();
    (resp.json().await.unwrap(), cache)
}

async fn register(http: &reqwest::Client, server: &common::Server) -> String {
    let resp = http
        .post(server.url("/plugins/register"))
        .bearer_auth(REGISTRATION)
        .json(&manifest())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn production_signs_with_the_first_key_and_publishes_every_key() {
    let dir = TempDir::new("signing");
    let (old, new) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    std::fs::write(&old, generate_ed25519_pem().unwrap().expose()).unwrap();
    std::fs::write(&new, generate_ed25519_pem().unwrap().expose()).unwrap();
    let http = client();

    // Before the rotation: the old key signs.
    let mut server = production(&[&old]).start().await;
    let (before, cache) = jwks(&http, &server).await;
    assert_eq!(cache, "public, max-age=300");
    assert_eq!(before["keys"].as_array().unwrap().len(), 1);
    let old_token = register(&http, &server).await;
    let h = header(&old_token);
    assert_eq!(h["alg"], "EdDSA");
    assert_eq!(h["kid"], before["keys"][0]["kid"]);
    assert!(server.stop(Duration::from_secs(5)).success());
    for leak in ["PRIVATE KEY", "\"d\""] {
        assert!(!server.stdout().contains(leak) && !before.to_string().contains(leak));
    }

    // After: the new key signs, the old one still verifies and is still published.
    let server = production(&[&new, &old]).start().await;
    let (after, _) = jwks(&http, &server).await;
    let kids: Vec<&Value> = after["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], &before["keys"][0]["kid"]);
    let new_token = register(&http, &server).await;
    assert_eq!(header(&new_token)["kid"], *kids[0]);
    // This core registered the id afresh, so the old token is 401 `revoked_token` —
    // an answer it only reaches after its signature (the old key's) checked out.
    let resp = http
        .post(server.url("/tokens/introspect"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "token": new_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["active"], true);
    let resp = http
        .post(server.url("/plugins/user-management/heartbeat"))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["reason"],
        "revoked_token",
        "the old key still verifies; the token is simply not current"
    );
}

#[tokio::test]
async fn dev_mode_signs_hs256_unless_given_keys() {
    let http = client();
    let dir = TempDir::new("signing-dev");
    let key = dir.path().join("dev.pem");
    std::fs::write(&key, generate_ed25519_pem().unwrap().expose()).unwrap();
    for (keys, alg) in [(None, "HS256"), (Some(&key), "EdDSA")] {
        let mut spawn = vivified().env("VIVIFIED_STORE", "memory");
        if let Some(key) = keys {
            spawn = spawn.env("VIVIFIED_SIGNING_KEYS", &key.display().to_string());
        }
        let mut server = spawn.start().await;
        let resp = http
            .post(server.url("/plugins/register"))
            .json(&manifest())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        let h = header(body["token"].as_str().unwrap());
        assert_eq!(h["alg"], alg);
        let (set, _) = jwks(&http, &server).await;
        match keys {
            None => assert_eq!(set, serde_json::json!({"keys": []})),
            Some(_) => assert_eq!(h["kid"], set["keys"][0]["kid"]),
        }
        assert!(server.stop(Duration::from_secs(5)).success());
    }
}

#[tokio::test]
async fn unusable_key_files_stop_start_up_with_one_line() {
    let dir = TempDir::new("signing-bad");
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge").unwrap();
    let missing = dir.path().join("missing.pem");
    for (case, path) in [("not a key", &not_a_key), ("missing", &missing)] {
        let out = production(&[path]).run_to_exit(Duration::from_secs(10));
        assert!(!out.status.success(), "{case}");
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{case}: {}", out.stderr);
        assert!(
            lines[0].contains("VIVIFIED_SIGNING_KEYS"),
            "{case}: {}",
            lines[0]
        );
        assert!(
            lines[0].contains(&path.display().to_string()),
            "{case}: {}",
            lines[0]
        );
        assert!(!lines[0].contains("Zq3v9X1p"), "never the file's content");
    }
    // Neither a key nor a JWT secret in production.
    let out = vivified()
        .env("VIVIFIED_MODE", "production")
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("VIVIFIED_REGISTRATION_SECRET", REGISTRATION)
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY)
        .run_to_exit(Duration::from_secs(10));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("VIVIFIED_SIGNING_KEYS"),
        "{}",
        out.stderr
    );
}
