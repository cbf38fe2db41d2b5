//! Abuse bounds through the real binary over TCP: registration and enrollment are
//! rate-limited per client address (the connection's peer).

mod common;

use common::{client, repo_path, vivified};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn registrations_from_one_address_are_rate_limited() {
    let mut server = vivified()
        .env("VIVIFIED_STORE", "memory")
        .env("VIVIFIED_REGISTRATION_RATE_LIMIT", "2")
        .start()
        .await;
    let http = client();
    let text = std::fs::read_to_string(repo_path("schemas/examples/user-management.json")).unwrap();
    let mut manifest: Value = serde_json::from_str(&text).unwrap();
    let mut statuses = Vec::new();
    for id in ["one", "two", "three"] {
        manifest["id"] = Value::from(id);
        let resp = http
            .post(server.url("/plugins/register"))
            .json(&manifest)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let after: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=30).contains(&after), "{after}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited");
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Everything else still answers.
    let resp = http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(server.stop(std::time::Duration::from_secs(5)).success());
}
