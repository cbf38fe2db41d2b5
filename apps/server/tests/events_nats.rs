//! Events through two real `vivified-server` processes on NATS JetStream:
//! two replicas sharing one fresh Postgres database and one NATS server, a publisher on
//! replica A, a subscriber pulling from replica B, half acknowledged, B killed with
//! `kill -9` and restarted, the rest pulled from A with the old cursor; a disabled
//! subscriber gets nothing. And a bus that cannot be reached stops the start with one
//! line that names the setting and never shows the URL's credentials.
//!
//! The replica test is gated like the other service tests: it runs when both
//! `VIVIFIED_TEST_NATS_URL` (e.g. `nats://127.0.0.1:4222`) and
//! `VIVIFIED_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`)
//! are set, skips with a line on stderr when one is not, and fails when `CI` is set
//! without them. It creates its own database (dropped at the end, also on panic). The
//! server has no setting for its NATS prefixes, so the test's plugin ids are unique per
//! run (`ev<12 hex>-…`), and its delivery streams (`VIVIFIED_DELIVER_<id>`) are deleted
//! at the end, also on panic.

mod common;

use std::time::{Duration, Instant};

use common::{Spawn, client, vivified};
use reqwest::StatusCode;
use serde_json::{Value, json};

use vivified_adapters::nats::{NatsBusConfig, NatsEventBus};
use vivified_ports::{EventBus, PluginId};
use vivified_test_support::fixtures::{answer, subscriber as manifest};
use vivified_test_support::postgres::ScratchDb;
use vivified_test_support::rt::on_own_runtime;
use vivified_test_support::services;

const JWT: &str = "Pq7w2Xe9Rt4Yu1Io6Pa3Sd8Fg5Hj0Kl-events-nats";
const ADMIN: &str = "adm-events-nats-3j8c1n6p0y";
const AUDIT_KEY: &str = "aud-events-nats-Lk8Jh7Gf6Ds5Aq4Wz3Xs2Ec1";
/// Events the publisher sends; the subscriber acknowledges the first half.
const EVENTS: usize = 10;
/// Longest a pull may wait here: above the bus's default `ack_wait` (10 s), the worst
/// case for an event whose fetch a killed replica left unanswered.
const PULL_WAIT: &str = "15s";

// ---------------------------------------------------------------------------------------
// Gates and fixtures
// ---------------------------------------------------------------------------------------

/// The delivery streams of this run's plugins (the server's default prefixes), deleted
/// when the test ends, even on panic.
struct Streams {
    nats_url: String,
    ids: Vec<String>,
}

impl Drop for Streams {
    fn drop(&mut self) {
        let (url, ids) = (self.nats_url.clone(), self.ids.clone());
        let removed = on_own_runtime(move || async move {
            let bus = NatsEventBus::connect(&url, NatsBusConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            for id in &ids {
                let id = PluginId::parse(id).map_err(|e| e.to_string())?;
                bus.remove_queue(&id).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
        if let Err(e) = removed {
            eprintln!("could not delete the test's NATS streams: {e}");
        }
    }
}

/// A dev-mode replica on the shared database and NATS, with the shared secrets.
fn replica(db_url: &str, nats_url: &str) -> Spawn {
    vivified()
        .env("VIVIFIED_STORE", db_url)
        .env("VIVIFIED_BUS", nats_url)
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY)
        .env("VIVIFIED_DB_MAX_CONNECTIONS", "4")
}

// ---------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------

/// Registers (dev mode) and returns the token.
async fn register(http: &reqwest::Client, base: &str, m: &Value) -> String {
    let resp = http
        .post(format!("{base}/plugins/register"))
        .json(m)
        .send()
        .await
        .expect("POST /plugins/register");
    let (status, body) = answer(resp).await;
    assert_eq!(status, StatusCode::OK, "register {}: {body}", m["id"]);
    body["token"].as_str().expect("a token").to_owned()
}

/// `POST /plugins/{id}/{action}` as the operator (`disable` or `enable`).
async fn admin_action(http: &reqwest::Client, base: &str, id: &str, action: &str) {
    let resp = http
        .post(format!("{base}/plugins/{id}/{action}"))
        .bearer_auth(ADMIN)
        .json(&json!({"reason": "events test"}))
        .send()
        .await
        .expect("admin action");
    let (status, body) = answer(resp).await;
    assert_eq!(status, StatusCode::OK, "{action} {id}: {body}");
}

/// `POST /events`; returns the status and the receipt.
async fn publish(http: &reqwest::Client, base: &str, token: &str, n: usize) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{base}/events"))
        .bearer_auth(token)
        .json(&json!({
            "event_type": "ward.reading",
            "data_traits": ["internal"],
            "payload": {"n": n, "bed": "12"},
        }))
        .send()
        .await
        .expect("POST /events");
    answer(resp).await
}

/// `GET /plugins/{id}/events?{query}`; returns the status and the body.
async fn pull(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    token: &str,
    query: &str,
) -> (StatusCode, Value) {
    let resp = http
        .get(format!("{base}/plugins/{id}/events?{query}"))
        .bearer_auth(token)
        // Longer than any `wait` used here.
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /plugins/{id}/events?{query}: {e}"));
    answer(resp).await
}

/// A pull that must answer 200; returns its events.
async fn pull_ok(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    token: &str,
    query: &str,
) -> (Vec<Value>, Value) {
    let (status, body) = pull(http, base, id, token, query).await;
    assert_eq!(status, StatusCode::OK, "pull {id}?{query}: {body}");
    assert_eq!(body["dropped"], 0, "nothing dropped: {body}");
    let events = body["events"].as_array().expect("an events array").clone();
    (events, body)
}

/// The `payload.n` of each event.
fn numbers(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["payload"]["n"].as_u64().expect("payload.n"))
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Publish on A, pull on B; acknowledge half on B; `kill -9` B and restart it; the old
/// cursor on A returns exactly the unacknowledged rest; a disabled subscriber gets
/// nothing, also after it is enabled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_nats_deliver_at_least_once_across_a_kill_9() {
    let Some(nats_url) = services::nats_url() else {
        return;
    };
    let Some(db) = ScratchDb::create("vivified_evnats").await else {
        return;
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = &run[..12];
    let (publisher, subscriber, disabled) = (
        format!("ev{run}-pub"),
        format!("ev{run}-sub"),
        format!("ev{run}-off"),
    );
    let _streams = Streams {
        nats_url: nats_url.clone(),
        ids: vec![publisher.clone(), subscriber.clone(), disabled.clone()],
    };
    let spawn = replica(db.url(), &nats_url);
    let http = client();
    let (a, mut b) = tokio::join!(spawn.start(), spawn.start());
    let (base_a, base_b) = (a.url(""), b.url(""));

    let pub_token = register(&http, &base_a, &manifest(&publisher, &[])).await;
    let sub_token = register(&http, &base_a, &manifest(&subscriber, &["ward.*"])).await;
    let off_token = register(&http, &base_b, &manifest(&disabled, &["ward.reading"])).await;
    // Disabled on B: A's directory sees it within a second.
    admin_action(&http, &base_b, &disabled, "disable").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let mut published = Vec::new();
    for n in 0..EVENTS {
        let (status, receipt) = publish(&http, &base_a, &pub_token, n).await;
        assert_eq!(status, StatusCode::ACCEPTED, "publish {n}: {receipt}");
        assert_eq!(
            (
                &receipt["delivered"],
                &receipt["sanitized"],
                &receipt["denied"]
            ),
            (&json!(1), &json!(0), &json!(1)),
            "one subscriber served, the disabled one denied: {receipt}"
        );
        published.push(receipt["event_id"].as_str().expect("event_id").to_owned());
    }

    // B serves the subscriber's pull of what A published (without a cursor, nothing
    // is acknowledged: pull until all ten are there).
    let started = Instant::now();
    let all = loop {
        let (events, _) = pull_ok(
            &http,
            &base_b,
            &subscriber,
            &sub_token,
            &format!("limit=100&wait={PULL_WAIT}"),
        )
        .await;
        if events.len() == EVENTS {
            break events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B returns all {EVENTS} events within 30 s, has {:?}",
            numbers(&events)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        numbers(&all),
        (0..EVENTS as u64).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(ids(&all), published, "the events A published");
    assert!(all.iter().all(|e| e["source_plugin"] == publisher.as_str()));

    // Acknowledge the first half on B: the same pull returns the rest.
    let half = all[EVENTS / 2 - 1]["cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let (rest, _) = pull_ok(
        &http,
        &base_b,
        &subscriber,
        &sub_token,
        &format!("after={half}&limit=100&wait={PULL_WAIT}"),
    )
    .await;
    assert_eq!(
        numbers(&rest),
        (EVENTS as u64 / 2..EVENTS as u64).collect::<Vec<_>>(),
        "after the half: the rest"
    );

    // B crashes before the plugin acknowledges the rest, and comes back.
    b.kill_hard();
    let b = spawn.start().await;
    let base_b = b.url("");

    // The old cursor on A: exactly the unacknowledged rest, again (at-least-once).
    let (again, _) = pull_ok(
        &http,
        &base_a,
        &subscriber,
        &sub_token,
        &format!("after={half}&limit=100&wait={PULL_WAIT}"),
    )
    .await;
    assert_eq!(
        ids(&again),
        published[EVENTS / 2..].to_vec(),
        "the unacknowledged rest, nothing acknowledged, nothing missing"
    );
    // Acknowledged everything on A; the restarted B has nothing more.
    let last = again[again.len() - 1]["cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let (none, body) = pull_ok(
        &http,
        &base_b,
        &subscriber,
        &sub_token,
        &format!("after={last}&wait=1s"),
    )
    .await;
    assert!(none.is_empty(), "all acknowledged: {body}");
    assert_eq!(body["next_cursor"], last.as_str(), "{body}");

    // The disabled subscriber: refused while disabled, and nothing waits for it after.
    let (status, body) = pull(&http, &base_a, &disabled, &off_token, "wait=0s").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "plugin_disabled", "{body}");
    admin_action(&http, &base_a, &disabled, "enable").await;
    let (none, body) = pull_ok(&http, &base_b, &disabled, &off_token, "wait=2s").await;
    assert!(
        none.is_empty(),
        "a disabled subscriber gets nothing: {body}"
    );

    drop((a, b));
    drop(db);
}

/// A NATS bus that cannot be reached: one stderr line naming the setting, never the
/// URL's user or password, a non-zero exit within 10 s, no panic.
fn refuses_to_start(name: &str, value: &str, never_shown: &[&str]) {
    let started = Instant::now();
    let exited = vivified()
        .env("VIVIFIED_STORE", "memory")
        .env(name, value)
        .run_to_exit(Duration::from_secs(30));
    let took = started.elapsed();
    let stderr = exited.stderr.trim_end();
    assert!(
        took < Duration::from_secs(10),
        "{name}: took {took:?} to give up (stderr: {stderr})"
    );
    assert!(!exited.status.success(), "{name}: exit {}", exited.status);
    assert_ne!(
        exited.status.code(),
        Some(101),
        "{name}: a panic's exit code"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{name}: one stderr line:\n{stderr}"
    );
    assert!(stderr.contains(name), "{name}: names the setting: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for secret in never_shown {
        assert!(
            !stderr.contains(secret) && !exited.stdout.contains(secret),
            "{name}: shows {secret:?}:\n{stderr}\n{}",
            exited.stdout
        );
    }
    eprintln!("{name}: exit {} after {took:?}: {stderr}", exited.status);
}

#[test]
fn unreachable_nats_in_vivified_bus_is_a_one_line_error_without_credentials() {
    refuses_to_start(
        "VIVIFIED_BUS",
        "nats://user-Nats-5k:pw-Nats-71q@127.0.0.1:1",
        &["user-Nats-5k", "pw-Nats-71q"],
    );
}

#[test]
fn unreachable_nats_in_nats_url_is_a_one_line_error_without_credentials() {
    refuses_to_start(
        "NATS_URL",
        "nats://user-Nats-6m:pw-Nats-72r@127.0.0.1:1",
        &["user-Nats-6m", "pw-Nats-72r"],
    );
}
