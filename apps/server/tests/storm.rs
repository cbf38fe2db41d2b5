//! `kill -9` in the middle of a storm: the real `vivified-server` on SQLite and on
//! Postgres, with heartbeats held in memory and registrations committed in groups (the
//! defaults), killed while 16 clients register and 8 keep 40 plugins beating. After the
//! restart every registration that was acknowledged is there, the audit chain
//! verifies, and no plugin that kept beating is stale within its TTL.
//!
//! The Postgres test is gated like the other Postgres tests (`VIVIFIED_TEST_POSTGRES_URL`;
//! it fails when `CI` is set without it).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Spawn, client, vivified};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use vivified_test_support::fixtures::{answer, example_manifest};
use vivified_test_support::fs::TempDir;
use vivified_test_support::postgres::ScratchDb;

const ADMIN: &str = "adm-storm-7x2k9q4m1z";
const JWT: &str = "St0rm-Pq7w2Xe9Rt4Yu1Io6Pa3Sd8Fg5Hj0Kl-kill9";
const AUDIT_KEY: &str = "5f0e3c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
const BEATERS: usize = 40;
/// The heartbeat TTL the core runs with (interval 2 s; the flush interval is then its
/// default, 1 s).
const TTL: Duration = Duration::from_secs(6);

fn configured(spawn: Spawn) -> Spawn {
    spawn
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY)
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "2s")
        .env("VIVIFIED_HEARTBEAT_TTL", "6s")
        .env("VIVIFIED_SWEEP_INTERVAL", "200ms")
        // Two clients going quiet at the kill are not a partition.
        .env("VIVIFIED_SELF_PRESERVATION_THRESHOLD", "1")
}

async fn admin_get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let resp = http
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let (status, body) = answer(resp).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// Every plugin, by id.
async fn list_all(http: &reqwest::Client, base: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let body = admin_get(http, base, &format!("/plugins?limit=1000&after={after}")).await;
        for p in body["plugins"].as_array().expect("a plugins array") {
            out.insert(
                p["plugin_id"].as_str().expect("an id").to_owned(),
                p.clone(),
            );
        }
        match body["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return out,
        }
    }
}

async fn register(http: &reqwest::Client, base: &str, id: &str) -> Option<String> {
    let resp = http
        .post(format!("{base}/plugins/register"))
        .json(&example_manifest(id))
        .send()
        .await
        .ok()?;
    let (status, body) = answer(resp).await;
    (status == StatusCode::OK).then(|| body["token"].as_str().expect("a token").to_owned())
}

async fn beat(http: &reqwest::Client, base: &str, id: &str, token: &str) -> bool {
    http.post(format!("{base}/plugins/{id}/heartbeat"))
        .bearer_auth(token)
        .json(&json!({"health": "healthy"}))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

/// Runs the storm on `spawn`: kill -9 in the middle, restart, check.
async fn storm(spawn: Spawn) {
    let http = client();
    let mut first = spawn.start().await;
    let base = first.url("");
    let mut beaters = Vec::new();
    for i in 0..BEATERS {
        let id = format!("beater-{i:02}");
        let token = register(&http, &base, &id)
            .await
            .expect("register a beater");
        beaters.push((id, token));
    }
    let beaters = Arc::new(beaters);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for t in 0..16 {
        let (http, base, acked, stop) = (http.clone(), base.clone(), acked.clone(), stop.clone());
        tasks.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("storm-{t:02}-{n:05}");
                n += 1;
                if register(&http, &base, &id).await.is_some() {
                    acked.lock().unwrap().push(id);
                }
            }
        });
    }
    for t in 0..8 {
        let (http, base, beaters, stop) =
            (http.clone(), base.clone(), beaters.clone(), stop.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (id, token) in beaters.iter().skip(t).step_by(8) {
                    beat(&http, &base, id, token).await;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let killed = first.kill_hard();
    assert!(!killed.success(), "killed: {killed}");
    let killed_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the storm registered ({} acknowledged)",
        acked.len()
    );

    let mut second = spawn.start().await;
    let base = second.url("");
    // Before any new beat: the beats written before the kill (at most one flush
    // interval, 1 s, is lost) keep every beater alive until about 5 s after it.
    let listed = list_all(&http, &base).await;
    let since_kill = killed_at.elapsed();
    assert!(
        since_kill < TTL - Duration::from_millis(1500),
        "the restart took {since_kill:?}: too slow for the check of liveness"
    );
    for (id, _) in beaters.iter() {
        assert_eq!(
            listed[id]["status"], "active",
            "{id} after {since_kill:?}: {}",
            listed[id]
        );
    }
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !listed.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged registrations lost: {lost:?}");
    // They keep beating through the new process, for more than a TTL: none goes stale.
    let until = Instant::now() + TTL + Duration::from_secs(1);
    while Instant::now() < until {
        for (id, token) in beaters.iter() {
            assert!(beat(&http, &base, id, token).await);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listed = list_all(&http, &base).await;
        for (id, _) in beaters.iter() {
            assert_eq!(
                listed[id]["status"], "active",
                "{id} kept beating: {}",
                listed[id]
            );
        }
    }
    // Everything acknowledged was audited, and the chain verifies.
    let verify = admin_get(&http, &base, "/audit/verify").await;
    assert_eq!(verify["intact"], true, "{verify}");
    let mut audited = std::collections::BTreeSet::new();
    let mut after = String::new();
    loop {
        let page = admin_get(
            &http,
            &base,
            &format!("/audit?action=plugin.register&outcome=success&limit=1000{after}"),
        )
        .await;
        for e in page["entries"].as_array().expect("entries") {
            audited.insert(e["target"].as_str().expect("a target").to_owned());
        }
        match page["next_after"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let unaudited: Vec<&String> = acked.iter().filter(|id| !audited.contains(*id)).collect();
    assert!(
        unaudited.is_empty(),
        "acknowledged registrations not audited: {unaudited:?}"
    );
    assert!(second.stop(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_keeps_what_it_acknowledged_through_kill_9_in_a_storm() {
    let data = TempDir::new("storm");
    storm(configured(vivified()).env(
        "VIVIFIED_DATA_DIR",
        data.path().to_str().expect("a UTF-8 path"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_what_it_acknowledged_through_kill_9_in_a_storm() {
    let Some(db) = ScratchDb::create("vivified_storm").await else {
        return;
    };
    storm(
        configured(vivified())
            .env("VIVIFIED_STORE", db.url())
            .env("VIVIFIED_DB_MAX_CONNECTIONS", "8"),
    )
    .await;
    db.drop_db().await;
}
