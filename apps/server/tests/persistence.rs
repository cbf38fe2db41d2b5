//! Persistence process tests: the real `vivified-server` binary on SQLite and on
//! Postgres, killed with `kill -9` and restarted, cut off from its database by a TCP
//! proxy the test owns, run as two replicas on one database, and started with a bad
//! store URL.
//!
//! The Postgres tests are gated like `adapters/tests/postgres.rs`: they run when
//! `VIVIFIED_TEST_POSTGRES_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/postgres`),
//! skip with a line on stderr when it is not, and fail when `CI` is set without it. Each
//! creates its own database and drops it at the end, even when it panics. The machine's
//! shared Postgres is never stopped: outages are made by cutting the test's own proxy.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Spawn, client, vivified};
use reqwest::StatusCode;
use serde_json::{Value, json};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use vivified_test_support::fixtures::{answer, banner_admin_token, example_manifest};
use vivified_test_support::fs::TempDir;
use vivified_test_support::postgres::ScratchDb;

/// Secrets shared by every start of one Postgres test (and by both replicas).
const JWT: &str = "Pq7w2Xe9Rt4Yu1Io6Pa3Sd8Fg5Hj0Kl-persistence";
const ADMIN: &str = "adm-persistence-4k9d2m7q1z";
/// Postgres connections per server: the machine's Postgres is shared with other tests.
const POOL: &str = "4";
/// How long a restored database may take to be used again.
const RECOVERY: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `POST /plugins/register` without credentials (dev mode: open registration).
async fn register(http: &reqwest::Client, base: &str, id: &str) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{base}/plugins/register"))
        .json(&example_manifest(id))
        .send()
        .await
        .unwrap_or_else(|e| panic!("register {id}: {e}"));
    answer(resp).await
}

/// Registers `id` and returns its token; panics on anything but 200.
async fn register_ok(http: &reqwest::Client, base: &str, id: &str) -> String {
    let (status, body) = register(http, base, id).await;
    assert_eq!(status, StatusCode::OK, "register {id}: {body}");
    body["token"].as_str().expect("a token").to_owned()
}

/// `POST /plugins/{id}/heartbeat`.
async fn heartbeat(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    token: &str,
) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{base}/plugins/{id}/heartbeat"))
        .bearer_auth(token)
        .json(&json!({ "health": "healthy" }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("heartbeat {id}: {e}"));
    answer(resp).await
}

/// `GET /ready`.
async fn ready(http: &reqwest::Client, base: &str) -> (StatusCode, Value) {
    let resp = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("GET /ready");
    answer(resp).await
}

/// Every plugin, by id, following `next_after` page by page.
async fn list_all(http: &reqwest::Client, base: &str, admin: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let resp = http
            // Plugin ids need no escaping.
            .get(format!("{base}/plugins?limit=1000&after={after}"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("GET /plugins");
        let (status, body) = answer(resp).await;
        assert_eq!(status, StatusCode::OK, "GET /plugins: {body}");
        for p in body["plugins"].as_array().expect("a plugins array") {
            let id = p["plugin_id"].as_str().expect("a plugin id").to_owned();
            out.insert(id, p.clone());
        }
        match body["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return out,
        }
    }
}

/// Runs `f` over `items` with at most `limit` in flight; results in input order.
async fn concurrently<I, T, F, Fut>(items: Vec<I>, limit: usize, f: F) -> Vec<T>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit));
    let mut set = JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.expect("a permit");
        let fut = f(item);
        set.spawn(async move {
            let out = fut.await;
            drop(permit);
            (i, out)
        });
    }
    let mut out = set.join_all().await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

/// Registers every id (16 at a time) and returns id → token; each must answer 200.
async fn register_all(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
) -> BTreeMap<String, String> {
    let tokens = concurrently(ids.to_vec(), 16, |id| {
        let (http, base) = (http.clone(), base.to_owned());
        async move {
            let token = register_ok(&http, &base, &id).await;
            (id, token)
        }
    })
    .await;
    tokens.into_iter().collect()
}

/// Heartbeats every plugin with its token (16 at a time); each must answer 200.
async fn heartbeat_all(http: &reqwest::Client, base: &str, tokens: &BTreeMap<String, String>) {
    let pairs: Vec<(String, String)> = tokens.clone().into_iter().collect();
    let failures: Vec<String> = concurrently(pairs, 16, |(id, token)| {
        let (http, base) = (http.clone(), base.to_owned());
        async move {
            let (status, body) = heartbeat(&http, &base, &id, &token).await;
            (status != StatusCode::OK).then(|| format!("{id}: {status} {body}"))
        }
    })
    .await
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "{} of {} heartbeats failed, e.g. {:?}",
        failures.len(),
        tokens.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Polls `probe` until it returns true; panics with `what` after `timeout`. Returns how
/// long it took.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if probe().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Postgres: a database per test, and a proxy that can cut it off
// ---------------------------------------------------------------------------------------

/// A TCP proxy in front of Postgres that the test can cut: cutting closes every open
/// connection and closes each new one as soon as it is accepted; restoring forwards again.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (cut, watching) = watch::channel(false);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *watching.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut watching = watching.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                    // Both sockets close here.
                });
            }
        });
        Self { port, cut, accept }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accept.abort();
    }
}

/// A dev-mode server on the Postgres database `url`, with the shared secrets.
fn on_postgres(url: &str) -> Spawn {
    vivified()
        .env("VIVIFIED_STORE", url)
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("VIVIFIED_DB_MAX_CONNECTIONS", POOL)
}

// ---------------------------------------------------------------------------------------
// 1. SQLite: kill -9 and restart
// ---------------------------------------------------------------------------------------

/// The default store (SQLite in `VIVIFIED_DATA_DIR`) keeps 100 registrations and their
/// tokens across `kill -9`; the dev admin token is generated once, kept, and not shown
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_registrations_and_tokens_survive_kill_9() {
    let data = TempDir::new("persistence");
    let spawn = vivified().env(
        "VIVIFIED_DATA_DIR",
        data.path().to_str().expect("a UTF-8 path"),
    );
    let http = client();

    let mut first = spawn.start().await;
    let banner = first
        .wait_stderr(Duration::from_secs(5), |e| e.contains("store:"))
        .await;
    assert!(
        banner.contains("store: sqlite://"),
        "the default store is SQLite:\n{banner}"
    );
    let admin = banner_admin_token(&banner);
    let ids: Vec<String> = (0..100).map(|i| format!("sqlite-crash-{i:03}")).collect();
    let tokens = register_all(&http, &first.url(""), &ids).await;
    assert_eq!(tokens.len(), 100);

    let killed = first.kill_hard();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(killed.signal(), Some(9), "killed by SIGKILL: {killed}");
    }
    #[cfg(not(unix))]
    assert!(!killed.success());
    assert!(data.join("vivified.db").is_file(), "the SQLite file");
    assert!(data.join("dev-secrets.json").is_file(), "the kept secrets");

    let mut second = spawn.start().await;
    let banner2 = second
        .wait_stderr(Duration::from_secs(5), |e| e.contains("store:"))
        .await;
    assert!(
        !banner2.contains("VIVIFIED_ADMIN_TOKEN=") && !banner2.contains(&admin),
        "the kept admin token is not printed again:\n{banner2}"
    );
    let base = second.url("");
    let listed = list_all(&http, &base, &admin).await;
    let listed_ids: Vec<&String> = listed.keys().collect();
    assert_eq!(
        listed_ids,
        ids.iter().collect::<Vec<_>>(),
        "all 100 registrations survive the crash"
    );
    heartbeat_all(&http, &base, &tokens).await;
    let listed = list_all(&http, &base, &admin).await;
    assert!(listed.values().all(|p| p["status"] == "active"));

    assert!(second.stop(Duration::from_secs(10)).success());
    assert!(
        !second.stdout().contains(&admin) && !first.stdout().contains(&admin),
        "the admin token never reaches the log"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Postgres: outage through the proxy, then kill -9 and restart
// ---------------------------------------------------------------------------------------

/// Cutting the database off answers 503 (JSON `unavailable`) and `/ready` 503; restoring
/// it recovers without a restart; no registration acknowledged with 200 is lost, not to
/// the outage and not to a `kill -9` afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_recovers_and_nothing_acknowledged_is_lost() {
    let Some(db) = ScratchDb::create("vivified_proc").await else {
        return;
    };
    let proxy = Proxy::start(db.server_addr()).await;
    let spawn = on_postgres(&db.url_via(&format!("127.0.0.1:{}", proxy.port)));
    let http = client();
    let mut server = spawn.start().await;
    let base = server.url("");

    // Before the outage.
    let ids: Vec<String> = (0..20).map(|i| format!("pg-before-{i:02}")).collect();
    let mut tokens = register_all(&http, &base, &ids).await;
    heartbeat_all(&http, &base, &tokens).await;
    assert_eq!(ready(&http, &base).await.0, StatusCode::OK);

    // A plugin that keeps registering through the outage, remembering every 200.
    let acked = Arc::new(std::sync::Mutex::new(BTreeMap::<String, String>::new()));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let registrar = {
        let (http, base) = (http.clone(), base.clone());
        let (acked, unavailable, stop) = (acked.clone(), unavailable.clone(), stop.clone());
        tokio::spawn(async move {
            let mut others = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("pg-during-{i:05}");
                i += 1;
                let (status, body) = register(&http, &base, &id).await;
                match status {
                    StatusCode::OK => {
                        let token = body["token"].as_str().expect("a token").to_owned();
                        acked.lock().unwrap().insert(id, token);
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert_eq!(body["error"], "unavailable", "503 body: {body}");
                        unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => others.push(format!("{id}: {status} {body}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            others
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    eventually(
        Duration::from_secs(10),
        "registrations before the cut",
        || {
            let n = acked_count();
            async move { n >= 5 }
        },
    )
    .await;

    // Cut.
    proxy.cut();
    let (probe_id, probe_token) = tokens
        .iter()
        .next()
        .map(|(i, t)| (i.clone(), t.clone()))
        .unwrap();
    let cut_at = Instant::now();
    let cut_body = loop {
        let (status, body) = heartbeat(&http, &base, &probe_id, &probe_token).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(10),
            "a heartbeat answers 503 once cut (last: {status} {body})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cut_body["error"], "unavailable", "503 body: {cut_body}");
    assert!(cut_body["detail"].is_string(), "503 body: {cut_body}");
    let (status, body) = ready(&http, &base).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "/ready while cut: {body}"
    );
    assert_eq!(body["error"], "unavailable", "/ready body: {body}");
    let resp = http
        .get(format!("{base}/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(resp).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "list while cut: {body}"
    );
    assert_eq!(body["error"], "unavailable");
    let (status, body) = register(&http, &base, "pg-refused-while-cut").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "register while cut: {body}"
    );
    assert_eq!(body["error"], "unavailable");
    let seen = unavailable.load(Ordering::SeqCst);
    eventually(Duration::from_secs(10), "the registrar sees 503s", || {
        let n = unavailable.load(Ordering::SeqCst);
        async move { n >= seen + 3 }
    })
    .await;
    assert!(server.stderr().lines().all(|l| !l.contains("panicked")));

    // Restore: no restart.
    let acked_at_restore = acked_count();
    proxy.restore();
    let took = eventually(RECOVERY, "/ready answers 200 after the restore", || {
        let (http, base) = (&http, &base);
        async move { ready(http, base).await.0 == StatusCode::OK }
    })
    .await;
    eprintln!("/ready recovered {took:?} after the restore");
    eventually(
        RECOVERY,
        "a heartbeat answers 200 after the restore",
        || {
            let (http, base, id, token) = (&http, &base, &probe_id, &probe_token);
            async move { heartbeat(http, base, id, token).await.0 == StatusCode::OK }
        },
    )
    .await;
    eventually(RECOVERY, "registrations succeed after the restore", || {
        let n = acked_count();
        async move { n >= acked_at_restore + 5 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let others = registrar.await.expect("the registrar");
    assert!(others.is_empty(), "only 200 or 503 while cut: {others:?}");
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the same process served throughout"
    );

    // Nothing acknowledged is missing.
    tokens.extend(acked.lock().unwrap().clone());
    let listed = list_all(&http, &base, ADMIN).await;
    let missing: Vec<&String> = tokens
        .keys()
        .filter(|id| !listed.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged with 200 but not listed: {missing:?}"
    );
    heartbeat_all(&http, &base, &tokens).await;

    // kill -9 and restart (straight to the database this time).
    server.kill_hard();
    let server = on_postgres(db.url()).start().await;
    let base = server.url("");
    let listed = list_all(&http, &base, ADMIN).await;
    let missing: Vec<&String> = tokens
        .keys()
        .filter(|id| !listed.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "lost to kill -9: {missing:?}");
    heartbeat_all(&http, &base, &tokens).await;
    eprintln!(
        "postgres outage: {} registrations acknowledged, {} answered 503",
        tokens.len(),
        unavailable.load(Ordering::SeqCst)
    );
    drop(server);
    drop(proxy);
    drop(db);
}

// ---------------------------------------------------------------------------------------
// 3. Two replicas on one Postgres database
// ---------------------------------------------------------------------------------------

/// Register on A, heartbeat and list on B; a refresh on B revokes the old token on A;
/// 50 concurrent registrations of one id over A and B succeed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_behave_as_one_service() {
    let Some(db) = ScratchDb::create("vivified_proc").await else {
        return;
    };
    let spawn = on_postgres(db.url());
    let http = client();
    let (a, b) = tokio::join!(spawn.start(), spawn.start());
    let (base_a, base_b) = (a.url(""), b.url(""));

    let token = register_ok(&http, &base_a, "replica-shared").await;
    let (status, body) = heartbeat(&http, &base_b, "replica-shared", &token).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "heartbeat on B of A's registration: {body}"
    );
    let listed = list_all(&http, &base_b, ADMIN).await;
    let record = listed
        .get("replica-shared")
        .expect("B lists A's registration");
    assert_eq!(record["status"], "active", "{record}");
    assert_eq!(record["health"], "healthy", "{record}");

    // Refresh on B: A refuses the old token, accepts the new one.
    let resp = http
        .post(format!("{base_b}/plugins/replica-shared/token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(resp).await;
    assert_eq!(status, StatusCode::OK, "refresh on B: {body}");
    let refreshed = body["token"].as_str().expect("a token").to_owned();
    assert_ne!(refreshed, token);
    let (status, body) = heartbeat(&http, &base_a, "replica-shared", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old token on A: {body}");
    assert_eq!(body["reason"], "revoked_token", "{body}");
    let (status, body) = heartbeat(&http, &base_a, "replica-shared", &refreshed).await;
    assert_eq!(status, StatusCode::OK, "new token on A: {body}");

    // 50 concurrent registrations of one id, alternating between A and B.
    let gate = Arc::new(tokio::sync::Barrier::new(50));
    let mut set = JoinSet::new();
    for i in 0..50 {
        let base = if i % 2 == 0 {
            base_a.clone()
        } else {
            base_b.clone()
        };
        let (http, gate) = (http.clone(), gate.clone());
        set.spawn(async move {
            gate.wait().await;
            let (status, body) = register(&http, &base, "replica-contended").await;
            (i % 2, status, body)
        });
    }
    let results = set.join_all().await;
    let winners: Vec<&(i32, StatusCode, Value)> = results
        .iter()
        .filter(|(_, s, _)| *s == StatusCode::OK)
        .collect();
    let conflicts = results
        .iter()
        .filter(|(_, s, b)| *s == StatusCode::CONFLICT && b["error"] == "already_registered")
        .count();
    let others: Vec<String> = results
        .iter()
        .filter(|(_, s, _)| *s != StatusCode::OK && *s != StatusCode::CONFLICT)
        .map(|(r, s, b)| format!("replica {r}: {s} {b}"))
        .collect();
    assert!(others.is_empty(), "only 200 and 409: {others:?}");
    assert_eq!(winners.len(), 1, "exactly one registration wins");
    assert_eq!(conflicts, 49, "the other 49 are 409 already_registered");
    let winner = winners[0].2["token"].as_str().expect("a token");
    for base in [&base_a, &base_b] {
        let (status, body) = heartbeat(&http, base, "replica-contended", winner).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the winner's token on both replicas: {body}"
        );
    }
    drop((a, b));
    drop(db);
}

// ---------------------------------------------------------------------------------------
// 4. A bad store at start-up
// ---------------------------------------------------------------------------------------

/// Exits non-zero within 10 s with one stderr line that names `setting`, no panic, and
/// no trace of `never_shown`.
fn refuses_to_start(name: &str, value: &str, setting: &str, never_shown: &str) {
    let started = Instant::now();
    let exited = vivified()
        .env(name, value)
        .run_to_exit(Duration::from_secs(30));
    let took = started.elapsed();
    let stderr = exited.stderr.trim_end();
    assert!(
        took < Duration::from_secs(10),
        "{name}={value}: took {took:?} to give up (stderr: {stderr})"
    );
    assert!(
        !exited.status.success(),
        "{name}={value}: exit {}",
        exited.status
    );
    assert_ne!(
        exited.status.code(),
        Some(101),
        "{name}={value}: a panic's exit code"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{name}={value}: one stderr line:\n{stderr}"
    );
    assert!(
        stderr.contains(setting),
        "{name}={value}: names {setting}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(never_shown) && !exited.stdout.contains(never_shown),
        "{name}={value}: echoes {never_shown:?}:\n{stderr}\n{}",
        exited.stdout
    );
    eprintln!(
        "{name}={value}: exit {} after {took:?}: {stderr}",
        exited.status
    );
}

#[test]
fn unreachable_postgres_in_vivified_store_is_a_one_line_error() {
    refuses_to_start(
        "VIVIFIED_STORE",
        "postgres://postgres:pw-Unreach-81x@127.0.0.1:1/nope",
        "VIVIFIED_STORE",
        "pw-Unreach-81x",
    );
}

#[test]
fn unreachable_postgres_in_database_url_is_a_one_line_error() {
    refuses_to_start(
        "DATABASE_URL",
        "postgres://postgres:pw-Unreach-82y@127.0.0.1:1/nope",
        "DATABASE_URL",
        "pw-Unreach-82y",
    );
}

#[test]
fn malformed_postgres_url_is_a_one_line_error_without_the_password() {
    refuses_to_start(
        "VIVIFIED_STORE",
        "postgres://user:pw-Malformed-93z@[bad",
        "VIVIFIED_STORE",
        "pw-Malformed-93z",
    );
    refuses_to_start(
        "DATABASE_URL",
        "postgres://user:pw-Malformed-94w@[bad",
        "DATABASE_URL",
        "pw-Malformed-94w",
    );
}

// ---------------------------------------------------------------------------------------
// 4. Two replicas sweeping one Postgres database
// ---------------------------------------------------------------------------------------

/// The `plugin_id` of every log line of `server` whose message is `msg`.
fn logged_ids(server: &common::Server, msg: &str) -> Vec<String> {
    common::json_lines(&server.stdout())
        .into_iter()
        .filter(|l| common::message(l) == msg)
        .filter_map(|l| {
            l.get("fields")
                .and_then(|f| f.get("plugin_id"))
                .or_else(|| l.get("plugin_id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// Both replicas sweep every 20 ms; 60 silent plugins go stale and are deregistered.
/// Each transition is applied by exactly one replica: across both logs, every plugin
/// is marked stale once and deregistered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_sweeping_one_postgres_apply_each_expiry_once() {
    let Some(db) = ScratchDb::create("vivified_proc").await else {
        return;
    };
    let spawn = on_postgres(db.url())
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "200ms")
        .env("VIVIFIED_HEARTBEAT_TTL", "600ms")
        .env("VIVIFIED_DEREGISTER_AFTER", "1200ms")
        .env("VIVIFIED_SWEEP_INTERVAL", "20ms")
        // Plugins expiring in step is what this test wants: no self-preservation.
        .env("VIVIFIED_SELF_PRESERVATION_THRESHOLD", "1");
    let http = client();
    let (a, b) = tokio::join!(spawn.start(), spawn.start());
    let (base_a, base_b) = (a.url(""), b.url(""));
    let ids: Vec<String> = (0..60).map(|i| format!("swept-{i:02}")).collect();
    let (on_a, on_b) = ids.split_at(30);
    register_all(&http, &base_a, on_a).await;
    register_all(&http, &base_b, on_b).await;

    eventually(Duration::from_secs(20), "every plugin deregistered", || {
        let (http, base) = (http.clone(), base_a.clone());
        async move { list_all(&http, &base, ADMIN).await.is_empty() }
    })
    .await;
    // Let a last sweep of either replica run (it must find nothing).
    tokio::time::sleep(Duration::from_millis(200)).await;

    for (what, msg) in [
        ("stale", "plugin stale: no heartbeat within the ttl"),
        (
            "deregistered",
            "plugin deregistered: silent beyond deregister_after",
        ),
    ] {
        let (from_a, from_b) = (logged_ids(&a, msg), logged_ids(&b, msg));
        let mut all: Vec<String> = from_a.iter().chain(&from_b).cloned().collect();
        all.sort();
        assert_eq!(
            all,
            ids,
            "every plugin {what} exactly once across both replicas (A: {}, B: {})",
            from_a.len(),
            from_b.len()
        );
    }
}
