//! Instances across two core replicas on one Postgres: a plugin's instances register,
//! heartbeat and refresh through either replica without revoking each other, and the
//! sweeps of both replicas take a silent instance out exactly once while the plugin
//! lives on with its other instance.
//!
//! Gated like the other Postgres tests: `VIVIFIED_TEST_POSTGRES_URL` (mandatory in CI).

mod common;

use std::time::{Duration, Instant};

use common::{client, vivified};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vivified_test_support::fixtures::{answer, example_manifest};
use vivified_test_support::postgres::ScratchDb;

const ADMIN: &str = "adm-instances-7q2w9e4r1t";

async fn register(
    http: &reqwest::Client,
    base: &str,
    instance: &str,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = http
        .post(format!("{base}/plugins/register?instance={instance}"))
        .json(&example_manifest("replicated"));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    answer(req.send().await.expect("register")).await
}

async fn heartbeat(http: &reqwest::Client, base: &str, token: &str) -> StatusCode {
    http.post(format!("{base}/plugins/replicated/heartbeat"))
        .bearer_auth(token)
        .json(&json!({"health": "healthy"}))
        .send()
        .await
        .expect("heartbeat")
        .status()
}

async fn record(http: &reqwest::Client, base: &str) -> (StatusCode, Value) {
    let resp = http
        .get(format!("{base}/plugins/replicated"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("get");
    answer(resp).await
}

fn instance_ids(record: &Value) -> Vec<String> {
    record["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["instance_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_are_shared_by_replicas_and_swept_once() {
    let Some(db) = ScratchDb::create("vivified_inst").await else {
        return;
    };
    let spawn = vivified()
        .env("VIVIFIED_STORE", db.url())
        .env("JWT_SECRET", "Zx8c2Vb6Nm1Qw5Er9Ty3Ui7Op4As0Df-instances")
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("VIVIFIED_DB_MAX_CONNECTIONS", "4")
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "200ms")
        .env("VIVIFIED_HEARTBEAT_TTL", "800ms")
        .env("VIVIFIED_DEREGISTER_AFTER", "1600ms")
        .env("VIVIFIED_SWEEP_INTERVAL", "20ms")
        .env("VIVIFIED_SELF_PRESERVATION_THRESHOLD", "1");
    let http = client();
    let (a, b) = tokio::join!(spawn.start(), spawn.start());
    let (on_a, on_b) = (a.url(""), b.url(""));

    // One instance registers on A; its token admits a second one on B.
    let (status, first) = register(&http, &on_a, "pod-a", None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let token_a = first["token"].as_str().unwrap().to_owned();
    let (status, second) = register(&http, &on_b, "pod-b", Some(&token_a)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["instance_id"], "pod-b");
    let token_b = second["token"].as_str().unwrap().to_owned();
    // Each beats through the other replica; a refresh of one on A leaves the other's.
    assert_eq!(heartbeat(&http, &on_b, &token_a).await, StatusCode::OK);
    assert_eq!(heartbeat(&http, &on_a, &token_b).await, StatusCode::OK);
    let (status, refreshed) = answer(
        http.post(format!("{on_a}/plugins/replicated/token"))
            .bearer_auth(&token_a)
            .send()
            .await
            .expect("refresh"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let token_a = refreshed["token"].as_str().unwrap().to_owned();
    assert_eq!(heartbeat(&http, &on_b, &token_b).await, StatusCode::OK);

    // pod-a keeps beating (through both replicas in turn); pod-b goes silent. Both
    // replicas sweep: pod-b goes stale, then is removed; the plugin lives on.
    let started = Instant::now();
    let mut n = 0u32;
    let gone = loop {
        let base = if n.is_multiple_of(2) { &on_a } else { &on_b };
        n += 1;
        assert_eq!(heartbeat(&http, base, &token_a).await, StatusCode::OK);
        let (status, rec) = record(&http, &on_a).await;
        assert_eq!(status, StatusCode::OK, "the plugin lives on: {rec}");
        assert_eq!(rec["status"], "active", "{rec}");
        if instance_ids(&rec) == ["pod-a"] {
            break rec;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "pod-b was never removed: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    assert_eq!(gone["instances"][0]["status"], "active");
    assert_eq!(
        heartbeat(&http, &on_b, &token_b).await,
        StatusCode::UNAUTHORIZED,
        "a removed instance's token is refused on every replica"
    );
    // Each instance transition was applied by exactly one replica.
    let logged = |msg: &str| -> usize {
        [&a, &b]
            .iter()
            .map(|s| {
                common::json_lines(&s.stdout())
                    .iter()
                    .filter(|l| {
                        common::message(l) == msg
                            && l.pointer("/fields/instance")
                                .or_else(|| l.get("instance"))
                                .and_then(Value::as_str)
                                == Some("pod-b")
                    })
                    .count()
            })
            .sum()
    };
    assert_eq!(logged("instance stale: no heartbeat within the ttl"), 1);
    assert_eq!(
        logged("instance removed: silent beyond deregister_after"),
        1
    );
    a.terminate();
    b.terminate();
    db.drop_db().await;
}
