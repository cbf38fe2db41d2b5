//! Audit chain process tests: the real `vivified-server` binary.
//!
//! - On SQLite: the core's start and stop are entries, a checkpoint taken from the
//!   structured log (every N entries and at shutdown) verifies across a restart, and
//!   rows of `audit_entries` edited or cut from the end of the file behind the running
//!   core are located by `GET /audit/verify`.
//! - On Postgres (gated like `persistence.rs`: runs when `VIVIFIED_TEST_POSTGRES_URL`
//!   is set, skips with a line on stderr when not, fails when `CI` is set without it):
//!   two processes on one fresh database register plugins concurrently, and the one
//!   chain they share verifies intact on either, without gaps, with one
//!   `plugin.register` entry per registration; after both stopped nothing is pending.

mod common;

use std::time::{Duration, Instant};

use common::{Spawn, client, json_lines, vivified};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::task::JoinSet;
use vivified_test_support::fixtures::{answer, example_manifest};
use vivified_test_support::fs::TempDir;
use vivified_test_support::postgres::ScratchDb;

const ADMIN: &str = "adm-audit-proc-7c2k9w4m1x";
const JWT: &str = "Lm4Nb7Vc0Xz3Aq6Ws9Ed2Rf5Tg8Yh1Uj-audit";
const AUDIT_KEY: &str = "aud-proc-Q2w4E6r8T0y1U3i5O7p9A2s4D6f8";
/// The key the rotation tests rotate to.
const NEXT_AUDIT_KEY: &str = "aud-proc-next-Z9x7C5v3B1n8M6k4J2h0Gf";

fn fingerprint(key: &str) -> String {
    vivified_domain::audit_chain::ChainKey::new(key.as_bytes())
        .expect("a long key")
        .fingerprint()
}

/// Whether a JSON log has the ERROR line of a sealer that does not hold the key in
/// force.
fn refuses_to_seal(stdout: &str) -> bool {
    json_lines(stdout).iter().any(|l| {
        l["level"] == "ERROR"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("audit sealing refused"))
    })
}

async fn register(http: &reqwest::Client, base: &str, id: &str) -> StatusCode {
    let resp = http
        .post(format!("{base}/plugins/register"))
        .json(&example_manifest(id))
        .send()
        .await
        .unwrap_or_else(|e| panic!("register {id}: {e}"));
    let (status, body) = answer(resp).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
        "register {id}: {status} {body}"
    );
    status
}

/// `GET {base}{path}` with the admin token, expecting 200 JSON.
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

/// Waits until `/ready` on `base` reports nothing pending (and, if given, `head`).
async fn sealed(http: &reqwest::Client, base: &str, head: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = http.get(format!("{base}/ready")).send().await;
        if let Ok(resp) = resp {
            let (status, body) = answer(resp).await;
            if status == StatusCode::OK
                && body["audit"]["pending"] == 0
                && head.is_none_or(|h| body["audit"]["head"] == h)
            {
                return body["audit"]["head"].as_u64().expect("a head");
            }
            assert!(
                Instant::now() < deadline,
                "not sealed within 20 s: {status} {body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every sealed entry, oldest first, through `GET /audit` pages.
async fn all_entries(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut query = "/audit?limit=1000".to_owned();
    loop {
        let page = admin_get(http, base, &query).await;
        out.extend(page["entries"].as_array().expect("entries").iter().cloned());
        match page["next_after"].as_u64() {
            Some(after) => query = format!("/audit?limit=1000&after={after}"),
            None => return out,
        }
    }
}

/// The `audit_checkpoint` lines of a JSON log: (`at`, checkpoint text).
fn checkpoints(stdout: &str) -> Vec<(String, String)> {
    json_lines(stdout)
        .iter()
        .filter_map(|l| {
            let cp = l.pointer("/fields/audit_checkpoint")?.as_str()?.to_owned();
            assert_eq!(l["level"], "INFO", "{l}");
            let at = l.pointer("/fields/at")?.as_str()?.to_owned();
            Some((at, cp))
        })
        .collect()
}

fn sqlite_core(data: &TempDir) -> Spawn {
    vivified()
        .env(
            "VIVIFIED_DATA_DIR",
            data.path().to_str().expect("a UTF-8 path"),
        )
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY)
        .env("VIVIFIED_AUDIT_CHECKPOINT_EVERY", "5")
        .env("VIVIFIED_AUDIT_SEAL_INTERVAL", "20ms")
}

async fn sqlite_exec(db: &std::path::Path, sql: &'static str) {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the core's SQLite file");
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_chain_checkpoints_in_the_log_and_catches_tampering_under_a_running_core() {
    let data = TempDir::new("audit");
    let db = data.join("vivified.db");
    let http = client();

    // 1. A core starts (seq 1), 12 registrations (2..=13), checkpoints every 5.
    let mut a = sqlite_core(&data).start().await;
    let base = a.url("");
    for i in 0..12 {
        assert_eq!(
            register(&http, &base, &format!("chain-{i:02}")).await,
            StatusCode::OK
        );
    }
    sealed(&http, &base, Some(13)).await;
    let entries = all_entries(&http, &base).await;
    assert_eq!(entries.len(), 13);
    assert_eq!(entries[0]["action"], "core.start", "{}", entries[0]);
    assert_eq!(entries[0]["actor"], "system");
    assert_eq!(entries[0]["details"]["store"], "sqlite");
    assert_eq!(
        entries[0]["details"]["policy"]["untagged"], "publisher_classification",
        "core.start records what untagged events carry"
    );
    let out = a
        .wait_stdout(Duration::from_secs(5), |s| {
            checkpoints(s).iter().any(|(at, _)| at == "interval")
        })
        .await;
    let interval: Vec<String> = checkpoints(&out)
        .into_iter()
        .filter(|(at, _)| at == "interval")
        .map(|(_, cp)| cp)
        .collect();
    assert!(!interval.is_empty(), "{out}");
    for cp in &interval {
        let r = admin_get(&http, &base, &format!("/audit/verify?checkpoint={cp}")).await;
        assert_eq!(r["intact"], true, "{cp}: {r}");
        assert_eq!(r["verified_up_to"], 13, "{r}");
    }

    // 2. A clean stop: `core.stop` is sealed and a shutdown checkpoint logged.
    let status = a.stop(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", a.stderr());
    let out = a.stdout();
    let shutdown: Vec<String> = checkpoints(&out)
        .into_iter()
        .filter(|(at, _)| at == "shutdown")
        .map(|(_, cp)| cp)
        .collect();
    assert_eq!(shutdown.len(), 1, "{out}");
    let shutdown = shutdown[0].clone();
    assert!(
        shutdown.starts_with("14:"),
        "core.stop is seq 14: {shutdown}"
    );
    for text in [a.stdout(), a.stderr()] {
        assert!(!text.contains(AUDIT_KEY), "the audit key was logged");
    }

    // 3. A restart on the same file: the chain goes on and verifies against the
    //    checkpoint of the first run.
    let b = sqlite_core(&data).start().await;
    let base = b.url("");
    sealed(&http, &base, Some(15)).await;
    let newest = admin_get(&http, &base, "/audit?order=newest&limit=3").await;
    let actions: Vec<&str> = newest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["core.start", "core.stop", "plugin.register"]);
    let r = admin_get(
        &http,
        &base,
        &format!("/audit/verify?checkpoint={shutdown}"),
    )
    .await;
    assert_eq!(r["intact"], true, "{r}");
    assert_eq!(r["verified_up_to"], 15);

    // 4. A field edited in the file behind the running core.
    sqlite_exec(
        &db,
        "UPDATE audit_entries SET target = 'someone-else' WHERE seq = 7",
    )
    .await;
    let r = admin_get(&http, &base, "/audit/verify").await;
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(r["first_bad_seq"], 7);
    assert_eq!(r["reason"], "hash_mismatch");
    assert_eq!(r["verified_up_to"], 6);
    sqlite_exec(
        &db,
        "UPDATE audit_entries SET target = 'chain-05' WHERE seq = 7",
    )
    .await;
    assert_eq!(
        admin_get(&http, &base, "/audit/verify").await["intact"],
        true
    );

    // 5. Rows cut from the end: the checkpoint stored with the last seal finds it, as
    //    does the logged one.
    sqlite_exec(&db, "DELETE FROM audit_entries WHERE seq >= 10").await;
    let r = admin_get(&http, &base, "/audit/verify").await;
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(
        (&r["first_bad_seq"], &r["reason"]),
        (&json!(10), &json!("chain_truncated"))
    );
    assert_eq!(r["verified_up_to"], 9);
    let r = admin_get(
        &http,
        &base,
        &format!("/audit/verify?checkpoint={shutdown}"),
    )
    .await;
    assert_eq!(r["intact"], false, "{r}");
    assert_eq!(r["first_bad_seq"], 10);
    assert_eq!(r["reason"], "chain_truncated");
    drop(b);
}

// ---------------------------------------------------------------------------------------
// The end of the chain cut while the core was stopped
// ---------------------------------------------------------------------------------------

/// What a core started on a chain cut at its end shows: one ERROR line naming the
/// problem, `/ready` 503 `audit_chain_broken` at the first missing seq, `/audit/verify`
/// broken there, and no sequence number handed out again (new entries stay pending).
async fn reported_as_cut(spawn: &Spawn, first_missing: u64, pending: u64) -> common::Server {
    let http = client();
    let core = spawn.start().await;
    let base = core.url("");
    let out = core
        .wait_stdout(Duration::from_secs(10), |s| {
            s.contains("entries were cut from its end")
        })
        .await;
    let lines: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(lines.len(), 1, "one line names the problem: {out}");
    assert_eq!(
        lines[0]["fields"]["first_bad_seq"], first_missing,
        "{}",
        lines[0]
    );
    assert_eq!(lines[0]["fields"]["reason"], "chain_truncated");
    assert_eq!(lines[0]["fields"]["checkpoint_seq"], 7, "{}", lines[0]);

    let id = format!("after-the-cut-{first_missing}");
    assert_eq!(register(&http, &base, &id).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = http.get(format!("{base}/ready")).send().await.unwrap();
    let (status, body) = answer(resp).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "audit_chain_broken");
    let audit = &body["audit"];
    assert_eq!(
        (&audit["intact"], &audit["first_bad_seq"], &audit["reason"]),
        (
            &json!(false),
            &json!(first_missing),
            &json!("chain_truncated")
        ),
        "{body}"
    );
    assert_eq!(
        audit["head"],
        first_missing - 1,
        "nothing sealed after the cut: {body}"
    );
    assert_eq!(
        audit["pending"], pending,
        "core.start and the registration wait: {body}"
    );
    let r = admin_get(&http, &base, "/audit/verify").await;
    assert_eq!(
        (&r["intact"], &r["first_bad_seq"], &r["reason"]),
        (
            &json!(false),
            &json!(first_missing),
            &json!("chain_truncated")
        ),
        "{r}"
    );
    let out = core.stdout();
    let errors = json_lines(&out)
        .into_iter()
        .filter(|l| l["level"] == "ERROR" || l["level"] == "WARN")
        .filter(|l| l["target"] == "vivified_server::audit")
        .count();
    assert_eq!(errors, 1, "the sealer does not repeat it: {out}");
    core
}

/// A first core seals seq 1..=7 (start, five registrations, stop); the checkpoint
/// stored with its last seal is at 7.
async fn seven_sealed_then_stopped(spawn: &Spawn) {
    let http = client();
    let mut core = spawn.start().await;
    let base = core.url("");
    for i in 0..5 {
        assert_eq!(
            register(&http, &base, &format!("cut-{i}")).await,
            StatusCode::OK
        );
    }
    sealed(&http, &base, Some(6)).await;
    assert!(core.stop(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_chain_cut_at_its_end_while_stopped_is_reported() {
    let data = TempDir::new("audit-cut");
    let db = data.join("vivified.db");
    let spawn = sqlite_core(&data);
    seven_sealed_then_stopped(&spawn).await;
    assert!(
        data.join("vivified.db-checkpoint").exists(),
        "the file beside the database"
    );

    // The rows alone: the checkpoint row finds it.
    sqlite_exec(&db, "DELETE FROM audit_entries WHERE seq >= 5").await;
    let mut core = reported_as_cut(&spawn, 5, 2).await;
    assert!(core.stop(Duration::from_secs(20)).success());

    // The rows and the checkpoint row: the file beside the database still finds it.
    sqlite_exec(
        &db,
        "DELETE FROM audit_entries WHERE seq >= 4; DELETE FROM audit_checkpoint",
    )
    .await;
    let mut core = reported_as_cut(&spawn, 4, 5).await;
    assert!(core.stop(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_chain_cut_at_its_end_while_stopped_is_reported() {
    let Some(db) = ScratchDb::create("vivified_audit_cut").await else {
        return;
    };
    let spawn = vivified()
        .env("VIVIFIED_STORE", db.url())
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY)
        .env("VIVIFIED_AUDIT_SEAL_INTERVAL", "20ms");
    seven_sealed_then_stopped(&spawn).await;
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    sqlx::raw_sql("DELETE FROM audit_entries WHERE seq >= 5")
        .execute(&mut conn)
        .await
        .expect("cut the tail");
    conn.close().await.ok();
    let mut core = reported_as_cut(&spawn, 5, 2).await;
    assert!(core.stop(Duration::from_secs(20)).success());
}

// ---------------------------------------------------------------------------------------
// Two replicas on one Postgres
// ---------------------------------------------------------------------------------------

/// A core on the scratch database, sealing every 10 ms; replicas share the audit key,
/// as they share the JWT secret.
fn postgres_replica(db: &ScratchDb) -> Spawn {
    vivified()
        .env("VIVIFIED_STORE", db.url())
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_AUDIT_KEY", AUDIT_KEY)
        .env("VIVIFIED_AUDIT_SEAL_INTERVAL", "10ms")
        .env("VIVIFIED_DB_MAX_CONNECTIONS", "4")
}

/// What the audit tables of the scratch database hold.
struct ChainRows {
    pending: i64,
    count: i64,
    /// The highest seq (0: none).
    max: i64,
    rotations: i64,
}

async fn chain_rows(db: &ScratchDb) -> ChainRows {
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_pending")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (count, max, rotations): (i64, Option<i64>, i64) = sqlx::query_as(
        "SELECT COUNT(*), MAX(seq), COUNT(*) FILTER (WHERE action = 'audit.key_rotated') \
         FROM audit_entries",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    ChainRows {
        pending,
        count,
        max: max.unwrap_or(0),
        rotations,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_seal_one_chain_without_gaps() {
    let Some(db) = ScratchDb::create("vivified_audit").await else {
        return;
    };
    let spawn = postgres_replica(&db);
    let http = client();
    let (mut a, mut b) = tokio::join!(spawn.start(), spawn.start());
    let bases = [a.url(""), b.url("")];

    // 120 registrations of distinct ids, alternating between the replicas, 16 at once.
    const N: usize = 120;
    let mut set = JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..N {
        let (http, base, gate) = (http.clone(), bases[i % 2].clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("a permit");
            register(&http, &base, &format!("replica-{i:03}")).await
        });
    }
    let statuses = set.join_all().await;
    let registered = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(registered, N, "every registration succeeds: {statuses:?}");

    // Both replicas see one chain: the two starts and every registration, sealed.
    let expected = (N + 2) as u64;
    for base in &bases {
        assert_eq!(sealed(&http, base, Some(expected)).await, expected);
    }
    for base in &bases {
        let r = admin_get(&http, base, "/audit/verify").await;
        assert_eq!(
            r,
            json!({
                "intact": true,
                "verified_up_to": expected,
                "first_bad_seq": null,
                "reason": null,
                "complete": true,
                "entries_checked": expected,
                "last_verified": r["last_verified"].clone(),
                "keys": [{"key": fingerprint(AUDIT_KEY), "from_seq": 1}],
            }),
            "{base}"
        );
        assert_eq!(r["last_verified"]["key"], fingerprint(AUDIT_KEY));
    }
    let entries = all_entries(&http, &bases[1]).await;
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=expected).collect::<Vec<_>>(),
        "no gaps, no forks"
    );
    let registrations = admin_get(
        &http,
        &bases[0],
        "/audit?action=plugin.register&outcome=success&limit=1000",
    )
    .await;
    let mut ids: Vec<&str> = registrations["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), N, "one plugin.register entry per registration");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "each for a different plugin");
    let starts = admin_get(&http, &bases[0], "/audit?action=core.start").await;
    assert_eq!(starts["entries"].as_array().unwrap().len(), 2);

    // Stop one, then the other: each stop is sealed, by itself or by the other.
    assert!(a.stop(Duration::from_secs(20)).success(), "{}", a.stderr());
    let head = sealed(&http, &bases[1], Some(expected + 1)).await;
    assert_eq!(head, expected + 1);
    assert!(b.stop(Duration::from_secs(20)).success(), "{}", b.stderr());
    let rows = chain_rows(&db).await;
    assert_eq!(rows.pending, 0, "the last stop sealed everything");
    let total = i64::try_from(expected + 2).unwrap();
    assert_eq!((rows.count, rows.max), (total, total));
    drop(db);
}

// ---------------------------------------------------------------------------------------
// Audit key rotation
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_audit_key_rotates_across_restarts() {
    let data = TempDir::new("audit-rotate");
    let http = client();
    let mut logs = Vec::new();

    // 1. The old key: start (1), two registrations (2, 3), stop (4).
    let mut a = sqlite_core(&data).start().await;
    for i in 0..2 {
        assert_eq!(
            register(&http, &a.url(""), &format!("rot-{i}")).await,
            StatusCode::OK
        );
    }
    sealed(&http, &a.url(""), Some(3)).await;
    assert!(a.stop(Duration::from_secs(20)).success(), "{}", a.stderr());
    logs.push(a.stdout() + &a.stderr());

    // 2. The new key, the old one as previous: its first seal starts with the rotation
    //    (5, sealed with the old key), then its start (6); its stop is 7.
    let rotated = sqlite_core(&data)
        .env("VIVIFIED_AUDIT_KEY", NEXT_AUDIT_KEY)
        .env("VIVIFIED_AUDIT_PREVIOUS_KEYS", AUDIT_KEY);
    let mut b = rotated.start().await;
    sealed(&http, &b.url(""), Some(6)).await;
    let entries = all_entries(&http, &b.url("")).await;
    assert_eq!(entries[4]["action"], "audit.key_rotated", "{}", entries[4]);
    assert_eq!(
        entries[4]["details"],
        json!({"previous_key": fingerprint(AUDIT_KEY), "key": fingerprint(NEXT_AUDIT_KEY)})
    );
    assert_eq!(entries[5]["action"], "core.start");
    assert_eq!(
        entries[5]["details"]["audit_previous_key_fingerprints"],
        json!([fingerprint(AUDIT_KEY)])
    );
    assert!(b.stop(Duration::from_secs(20)).success(), "{}", b.stderr());
    logs.push(b.stdout() + &b.stderr());

    // 3. Started again with the old key alone: it refuses to seal, loudly, and its
    //    verification stops where the key it lacks took over.
    let mut c = sqlite_core(&data).start().await;
    c.wait_stdout(Duration::from_secs(10), refuses_to_seal)
        .await;
    let metrics = http
        .get(c.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vivified_audit_seal_failures_total{reason=\"unknown_key\"}")),
        "{metrics}"
    );
    let r = admin_get(&http, &c.url(""), "/audit/verify").await;
    assert_eq!(
        (
            &r["intact"],
            &r["verified_up_to"],
            &r["first_bad_seq"],
            &r["reason"]
        ),
        (&json!(false), &json!(5), &json!(6), &json!("unknown_key")),
        "{r}"
    );
    c.stop(Duration::from_secs(20));
    logs.push(c.stdout() + &c.stderr());

    // 4. Restarted with the new key: what the old-key core appended (its start and
    //    stop, 8 and 9) is sealed with the new key, without another rotation, and the
    //    chain verifies across the rotation.
    let mut d = rotated.start().await;
    sealed(&http, &d.url(""), Some(10)).await;
    let r = admin_get(&http, &d.url(""), "/audit/verify").await;
    assert_eq!(r["intact"], true, "{r}");
    assert_eq!(r["verified_up_to"], 10, "{r}");
    assert_eq!(
        r["keys"],
        json!([
            {"key": fingerprint(AUDIT_KEY), "from_seq": 1},
            {"key": fingerprint(NEXT_AUDIT_KEY), "from_seq": 6},
        ])
    );
    assert_eq!(r["last_verified"]["key"], fingerprint(NEXT_AUDIT_KEY));
    // Resumed from the rotation with the key in force there, in bounded steps.
    let rotation = &all_entries(&http, &d.url("")).await[4];
    let resume = format!(
        "{}:{}:{}",
        rotation["seq"],
        rotation["hash"].as_str().unwrap(),
        fingerprint(NEXT_AUDIT_KEY)
    );
    let r = admin_get(&http, &d.url(""), &format!("/audit/verify?resume={resume}")).await;
    assert_eq!(
        (&r["intact"], &r["verified_up_to"]),
        (&json!(true), &json!(10)),
        "{r}"
    );
    let rotations = admin_get(&http, &d.url(""), "/audit?action=audit.key_rotated").await;
    assert_eq!(rotations["entries"].as_array().unwrap().len(), 1);
    assert!(d.stop(Duration::from_secs(20)).success(), "{}", d.stderr());
    logs.push(d.stdout() + &d.stderr());
    for text in logs {
        assert!(
            !text.contains(AUDIT_KEY) && !text.contains(NEXT_AUDIT_KEY),
            "an audit key was logged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_rotate_the_audit_key_one_at_a_time() {
    let Some(db) = ScratchDb::create("vivified_audit").await else {
        return;
    };
    let old = postgres_replica(&db);
    let http = client();
    let mut a = old.start().await;
    register(&http, &a.url(""), "pg-rot-a").await;
    sealed(&http, &a.url(""), Some(2)).await;

    // A second replica with the new key (the old one as previous): once it wins the
    // sealing lock with something pending, it rotates.
    let mut b = old
        .clone()
        .env("VIVIFIED_AUDIT_KEY", NEXT_AUDIT_KEY)
        .env("VIVIFIED_AUDIT_PREVIOUS_KEYS", AUDIT_KEY)
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let rotation = loop {
        register(&http, &b.url(""), &format!("pg-rot-b{n}")).await;
        n += 1;
        sealed(&http, &b.url(""), None).await;
        let found = admin_get(&http, &b.url(""), "/audit?action=audit.key_rotated").await;
        if let Some(e) = found["entries"].as_array().and_then(|e| e.first()) {
            break e["seq"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no rotation within 20 s");
    };

    // The replica on the old key can no longer seal and says so; the new one seals
    // what it appends, so nothing waits.
    a.wait_stdout(Duration::from_secs(10), refuses_to_seal)
        .await;
    register(&http, &a.url(""), "pg-rot-a2").await;
    let head = sealed(&http, &a.url(""), None).await;
    assert!(head > rotation);
    let r = admin_get(&http, &b.url(""), "/audit/verify").await;
    assert_eq!(
        (&r["intact"], &r["verified_up_to"]),
        (&json!(true), &json!(head)),
        "{r}"
    );
    assert_eq!(
        r["keys"],
        json!([
            {"key": fingerprint(AUDIT_KEY), "from_seq": 1},
            {"key": fingerprint(NEXT_AUDIT_KEY), "from_seq": rotation + 1},
        ])
    );
    let r = admin_get(&http, &a.url(""), "/audit/verify").await;
    assert_eq!(
        (&r["first_bad_seq"], &r["reason"]),
        (&json!(rotation + 1), &json!("unknown_key")),
        "{r}"
    );

    // Both stop; the old replica's stop is sealed by the new one, which stops last.
    a.stop(Duration::from_secs(20));
    sealed(&http, &b.url(""), Some(head + 1)).await;
    assert!(b.stop(Duration::from_secs(20)).success(), "{}", b.stderr());
    let rows = chain_rows(&db).await;
    assert_eq!(rows.pending, 0);
    assert_eq!(rows.count, rows.max, "no gap, no fork");
    assert_eq!(rows.rotations, 1, "one rotation");
    drop(db);
}
