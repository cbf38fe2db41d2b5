//! Liveness with the real binary and real time (sub-second settings, dev mode): a
//! plugin that stops heartbeating goes stale, comes back, and is deregistered after
//! `VIVIFIED_DEREGISTER_AFTER`; a hundred plugins going silent together are kept
//! (self-preservation) with one loud warning.

mod common;

use std::time::{Duration, Instant};

use common::{Spawn, client, json_lines, message, vivified};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vivified_test_support::fixtures::manifest;

const ADMIN: &str = "liveness-admin-token-0123456789";

fn spawn(interval: &str, ttl: &str, deregister_after: &str) -> Spawn {
    vivified()
        .env("VIVIFIED_STORE", "memory")
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("VIVIFIED_HEARTBEAT_INTERVAL", interval)
        .env("VIVIFIED_HEARTBEAT_TTL", ttl)
        .env("VIVIFIED_DEREGISTER_AFTER", deregister_after)
        .env("VIVIFIED_SWEEP_INTERVAL", "50ms")
}

async fn register(c: &reqwest::Client, url: &str, id: &str) -> String {
    let resp = c
        .post(format!("{url}/plugins/register"))
        .json(&manifest(id))
        .send()
        .await
        .expect("core answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("JSON");
    body["token"].as_str().expect("a token").to_owned()
}

async fn heartbeat(c: &reqwest::Client, url: &str, id: &str, token: &str) -> StatusCode {
    c.post(format!("{url}/plugins/{id}/heartbeat"))
        .bearer_auth(token)
        .json(&json!({"health": "healthy"}))
        .send()
        .await
        .expect("core answers")
        .status()
}

/// `GET /plugins/{id}` as the admin: the status code and the body.
async fn record(c: &reqwest::Client, url: &str, id: &str) -> (StatusCode, Value) {
    let resp = c
        .get(format!("{url}/plugins/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("core answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls until `pred` holds for plugin `id`'s (status, record), or panics.
async fn wait_for(
    c: &reqwest::Client,
    url: &str,
    id: &str,
    what: &str,
    pred: impl Fn(StatusCode, &Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = record(c, url, id).await;
        if pred(status, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became {what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_silent_plugin_goes_stale_recovers_and_is_deregistered_after_the_grace() {
    let server = spawn("100ms", "300ms", "1500ms").start().await;
    let url = server.url("");
    let url = url.trim_end_matches('/');
    let c = client();
    let token = register(&c, url, "fading").await;
    assert_eq!(heartbeat(&c, url, "fading", &token).await, StatusCode::OK);
    let (_, body) = record(&c, url, "fading").await;
    assert_eq!(body["liveness"], "active");
    assert_eq!(body["health"], "healthy");

    // Stops heartbeating: stale after the ttl, health kept as last reported.
    let started = Instant::now();
    wait_for(&c, url, "fading", "stale", |s, b| {
        s == StatusCode::OK && b["liveness"] == "stale"
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the ttl"
    );
    let (_, body) = record(&c, url, "fading").await;
    assert_eq!(
        body["health"], "healthy",
        "liveness and health are separate fields"
    );
    let listed: Value = c
        .get(format!("{url}/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["plugins"][0]["liveness"], "stale");

    // Resumes: active again.
    assert_eq!(heartbeat(&c, url, "fading", &token).await, StatusCode::OK);
    let (_, body) = record(&c, url, "fading").await;
    assert_eq!(body["liveness"], "active");

    // Stops for good: stale, then gone once deregister_after has passed.
    let stopped = Instant::now();
    wait_for(&c, url, "fading", "deregistered", |s, _| {
        s == StatusCode::NOT_FOUND
    })
    .await;
    assert!(
        stopped.elapsed() >= Duration::from_millis(1400),
        "not before deregister_after"
    );
    assert_eq!(
        heartbeat(&c, url, "fading", &token).await,
        StatusCode::UNAUTHORIZED,
        "the token of a deregistered plugin is rejected"
    );
    register(&c, url, "fading").await; // the id is free again

    let expected = [
        "plugin stale: no heartbeat within the ttl",
        "plugin recovered",
        "plugin deregistered: silent beyond deregister_after",
    ];
    let has = |lines: &[Value], m: &str| lines.iter().any(|l| message(l) == m);
    let out = server
        .stdout_when(Duration::from_secs(2), |out| {
            let lines = json_lines(out);
            expected.iter().all(|m| has(&lines, m))
        })
        .await;
    let lines = json_lines(&out);
    for m in expected {
        assert!(has(&lines, m), "no `{m}` log line");
    }
}

#[tokio::test]
async fn a_hundred_plugins_stopping_at_once_are_kept_with_one_warning() {
    let server = spawn("300ms", "2s", "4s").start().await;
    let url = server.url("");
    let url = url.trim_end_matches('/');
    let c = client();
    let ids: Vec<String> = (0..100).map(|i| format!("herd-{i:03}")).collect();
    let tokens = join_all(ids.iter().map(|id| register(&c, url, id))).await;
    let codes = join_all(
        ids.iter()
            .zip(&tokens)
            .map(|(id, t)| heartbeat(&c, url, id, t)),
    )
    .await;
    assert!(codes.iter().all(|s| *s == StatusCode::OK));

    // All stop. Past the ttl and the deregistration grace, nobody has expired.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: Value = c
            .get(format!("{url}/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["self_preservation"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "self-preservation never started: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let listed: Value = c
        .get(format!("{url}/plugins?limit=1000"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugins = listed["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 100, "none was deregistered");
    assert!(
        plugins.iter().all(|p| p["liveness"] == "active"),
        "none was marked stale"
    );
    let ready = c.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "/ready stays 200");

    let warnings: Vec<Value> = json_lines(&server.stdout())
        .into_iter()
        .filter(|l| message(l).starts_with("SELF-PRESERVATION"))
        .collect();
    assert_eq!(warnings.len(), 1, "one loud warning, not one per sweep");
    assert_eq!(warnings[0]["level"], "WARN");

    // Half of them come back: the silent half is no longer above the threshold... at
    // exactly 50 % it is not *more* than half, so the silent ones now expire.
    for (id, t) in ids.iter().zip(&tokens).take(50) {
        assert_eq!(heartbeat(&c, url, id, t).await, StatusCode::OK);
    }
    wait_for(&c, url, "herd-099", "stale or gone", |s, b| {
        s == StatusCode::NOT_FOUND || b["liveness"] == "stale"
    })
    .await;
    let ready: Value = c
        .get(format!("{url}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["self_preservation"], false);
    assert_eq!(record(&c, url, "herd-000").await.1["liveness"], "active");
}
