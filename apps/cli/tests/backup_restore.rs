//! Backup and restore of the store, as an operator does it: the real core
//! (`vivified serve`, the same start-up as `vivified-server`) on a SQLite file and on a
//! Postgres database, a backup taken while it runs and registrations go on, more
//! changes after the backup, the core stopped, the backup restored, the core started on
//! it — then what a restore means: the records and tokens of the backup are back,
//! later ones are gone, the audit chain verifies up to the backup point and continues.
//!
//! - SQLite: `vivified backup --sqlite DB --out FILE` (VACUUM INTO), restored by
//!   replacing the file (and its -wal/-shm), dev mode with `dev-secrets.json`.
//! - Postgres: `pg_dump -Fc` of a unique database, `pg_restore --no-owner` into a
//!   second unique database (both dropped at the end, with `psql`), production mode.
//!   Runs when `VIVIFIED_TEST_POSTGRES_URL` is set, skips with a line when it is not,
//!   fails when `CI` is set without it. Needs `pg_dump`, `pg_restore` and `psql` on
//!   `PATH`, of the server's major version or newer.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vivified_test_support::fs::TempDir;
use vivified_test_support::postgres::ScratchDb;
use vivified_test_support::process::{Captured, Ran, isolated};
use vivified_test_support::services;

/// The admin token of every core here.
const ADMIN: &str = "adm-backup-test-Hq4Wn8Rz2Kx6";
/// Production mode's secrets (the Postgres test).
const JWT: &str = "jwt-backup-test-Lk3Pq9Zx7Wm2Rv5Tn8Yb1Hc4Gd6Fs0Ja";
const AUDIT_KEY: &str = "aud-backup-test-Xe5Rt7Yu9Io1Pa3Sd6Fg8Hj0Kl2Zm4";
const REGISTRATION: &str = "reg-backup-test-Vb7Nm2Qw5Er8";
/// Plugins registered while the backup is taken.
const BURST: usize = 20;

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A path under the repository root.
fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// `vivified` with an empty environment (plus `PATH`), run in `dir`.
fn vivified(dir: &Path) -> Command {
    isolated(env!("CARGO_BIN_EXE_vivified"), dir)
}

/// Runs `cmd` to completion.
fn run(cmd: &mut Command) -> Ran {
    Ran::of(cmd)
}

/// A running `vivified serve`; killed when dropped.
struct Core {
    child: Child,
    url: String,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
}

impl Core {
    /// Starts `vivified serve` in `dir` with `env` on a free loopback port and waits for
    /// `/health` (another port if this one was taken meanwhile).
    async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut cmd = vivified(dir);
            cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
                .env("VIVIFIED_AUDIT_SEAL_INTERVAL", "20ms")
                .env("VIVIFIED_LOG_LEVEL", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("start vivified serve");
            let (stdout, stderr) = (Captured::default(), Captured::default());
            let readers = vec![
                stdout.spawn_reader(child.stdout.take().expect("stdout")),
                stderr.spawn_reader(child.stderr.take().expect("stderr")),
            ];
            let mut core = Self {
                child,
                url: format!("http://127.0.0.1:{port}"),
                stdout,
                stderr,
                readers,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = core.child.try_wait() {
                    let stderr = core.stderr.text();
                    assert!(
                        stderr.contains("cannot listen"),
                        "the core exited ({status}):\n{stderr}\n{}",
                        core.stdout.text()
                    );
                    break; // lost the port
                }
                let health = format!("{}/health", core.url);
                if let Ok(Ok((200, _))) =
                    tokio::task::spawn_blocking(move || http("GET", &health, None, None)).await
                {
                    return core;
                }
                assert!(
                    Instant::now() < deadline,
                    "the core did not come up:\n{}",
                    core.stderr.text()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("no free port after three attempts");
    }

    /// SIGTERM, a clean exit (0), and everything it logged.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        assert!(status.success(), "{status}:\n{}", self.stderr.text());
        self.stdout.text()
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// One plain HTTP/1.1 request on a fresh loopback connection (`Connection: close`):
/// the status and the body. A few lines of std instead of an HTTP client library, so
/// the test needs no TLS set-up of one.
fn http(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::Write;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("not an http:// URL"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let payload = body.map(Value::to_string).unwrap_or_default();
    if body.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the headers"))?;
    let headers = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if headers.contains("\r\ntransfer-encoding: chunked") {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// Status and JSON body (`Null` when empty or not JSON); panics if the core does not
/// answer.
async fn call(
    method: &'static str,
    url: String,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let bearer = bearer.map(str::to_owned);
    let (status, raw) = tokio::task::spawn_blocking(move || {
        http(method, &url, bearer.as_deref(), body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    })
    .await
    .expect("the request ran");
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

fn manifest(id: &str) -> Value {
    let text = std::fs::read_to_string(repo("schemas/examples/user-management.json"))
        .expect("the example manifest");
    let mut m: Value = serde_json::from_str(&text).expect("JSON");
    m["id"] = json!(id);
    m
}

async fn register(base: &str, id: &str, bearer: Option<&str>) -> (u16, Value) {
    call(
        "POST",
        format!("{base}/plugins/register"),
        bearer,
        Some(manifest(id)),
    )
    .await
}

/// Registers `id` (200 expected) and returns its token.
async fn register_ok(base: &str, id: &str, bearer: Option<&str>) -> String {
    let (status, body) = register(base, id, bearer).await;
    assert_eq!(status, 200, "register {id}: {body}");
    body["token"].as_str().expect("a token").to_owned()
}

async fn heartbeat(base: &str, id: &str, token: &str) -> (u16, Value) {
    call(
        "POST",
        format!("{base}/plugins/{id}/heartbeat"),
        Some(token),
        Some(json!({"health": "healthy"})),
    )
    .await
}

/// Every plugin id in the store (fewer than 1000 here).
async fn plugin_ids(base: &str) -> BTreeSet<String> {
    let (status, body) = call(
        "GET",
        format!("{base}/plugins?limit=1000"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["next_after"].is_null(), "one page: {body}");
    body["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["plugin_id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Waits until nothing is pending in the audit log; the chain's head.
async fn sealed(base: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = call("GET", format!("{base}/ready"), None, None).await;
        if status == 200 && body["audit"]["pending"] == 0 {
            return body["audit"]["head"].as_u64().expect("a head");
        }
        assert!(Instant::now() < deadline, "not sealed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Targets of the sealed `plugin.register` entries, in chain order.
async fn registered_in_audit(base: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = call(
            "GET",
            format!("{base}/audit?action=plugin.register&limit=1000{after}"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        for e in body["entries"].as_array().expect("entries") {
            out.push(e["target"].as_str().expect("a target").to_owned());
        }
        match body["next_after"].as_u64() {
            Some(n) => after = format!("&after={n}"),
            None => return out,
        }
    }
}

/// `vivified audit verify [--checkpoint CP]` against `base`.
fn cli_verify(dir: &Path, base: &str, checkpoint: Option<&str>) -> Ran {
    let mut cmd = vivified(dir);
    cmd.env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .args(["audit", "verify", "--core-url", base]);
    if let Some(cp) = checkpoint {
        cmd.args(["--checkpoint", cp]);
    }
    run(&mut cmd)
}

/// `vivified plugins deregister ID` against `base`, which must succeed.
fn cli_deregister(dir: &Path, base: &str, id: &str) {
    let r = run(vivified(dir).env("VIVIFIED_ADMIN_TOKEN", ADMIN).args([
        "plugins",
        "deregister",
        id,
        "--core-url",
        base,
    ]));
    assert_eq!(r.code, 0, "deregister {id}: {r:?}");
}

/// `intact up to seq N` → N; panics on anything else.
fn intact_up_to(run: &Ran) -> u64 {
    assert_eq!(run.code, 0, "audit verify: {run:?}");
    run.stdout
        .trim()
        .strip_prefix("intact up to seq ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("audit verify said {:?}", run.stdout))
}

/// The last `audit_checkpoint` of a JSON log (the one written at shutdown).
fn last_checkpoint(log: &str) -> String {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| {
            l.pointer("/fields/audit_checkpoint")?
                .as_str()
                .map(str::to_owned)
        })
        .next_back()
        .unwrap_or_else(|| panic!("no audit_checkpoint in the log:\n{log}"))
}

// ---------------------------------------------------------------------------------------
// The scenario, the same on both stores
// ---------------------------------------------------------------------------------------

/// How new plugins register: dev mode (no credential) or production (the secret).
#[derive(Clone, Copy)]
enum Mode {
    Dev,
    Production,
}

impl Mode {
    fn credential(self) -> Option<&'static str> {
        match self {
            Self::Dev => None,
            Self::Production => Some(REGISTRATION),
        }
    }
}

/// What the first core did, for the checks on the restored one.
struct BeforeRestore {
    /// Registered before the backup, with their tokens.
    kept: Vec<(String, String)>,
    /// Registered while the backup ran: (id, token).
    burst: Vec<(String, String)>,
    /// Registered after the backup.
    late: (String, String),
    /// Re-registered after the backup: (id, token before, token after).
    rotated: (String, String, String),
    /// Deregistered after the backup, with its token.
    removed: (String, String),
    /// The chain head the first core verified before it stopped.
    head: u64,
    /// Its shutdown checkpoint.
    checkpoint: String,
}

/// Starts the first core, registers, takes the backup (`backup`, run on a blocking
/// thread while registrations go on) and changes more after it, then stops the core.
async fn before_restore(
    work: &Path,
    env: &[(&str, &str)],
    mode: Mode,
    backup: impl FnOnce() + Send + 'static,
) -> BeforeRestore {
    let core = Core::start(work, env).await;
    let base = core.url.clone();
    let cred = mode.credential();

    let mut kept = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        let token = register_ok(&base, id, cred).await;
        let (status, body) = heartbeat(&base, id, &token).await;
        assert_eq!(status, 200, "{body}");
        kept.push((id.to_owned(), token));
    }
    let rotated_before = register_ok(&base, "rotated", cred).await;
    let removed_token = register_ok(&base, "removed", cred).await;

    // The backup, with registrations going on meanwhile.
    let burst_base = base.clone();
    let burst = tokio::spawn(async move {
        let mut out = Vec::new();
        for i in 0..BURST {
            let id = format!("burst-{i}");
            let token = register_ok(&burst_base, &id, cred).await;
            out.push((id, token));
        }
        out
    });
    tokio::task::spawn_blocking(backup)
        .await
        .expect("the backup ran");
    let burst = burst.await.expect("the burst ran");

    // After the backup: a new plugin, a re-registration, a deregistration.
    let late = register_ok(&base, "late", cred).await;
    let (status, body) = register(&base, "rotated", Some(&rotated_before)).await;
    assert_eq!(status, 200, "re-register: {body}");
    let rotated_after = body["token"].as_str().expect("a token").to_owned();
    cli_deregister(work, &base, "removed");

    let head = sealed(&base).await;
    assert_eq!(intact_up_to(&cli_verify(work, &base, None)), head);
    let log = core.stop();
    BeforeRestore {
        kept,
        burst,
        late: ("late".into(), late),
        rotated: ("rotated".into(), rotated_before, rotated_after),
        removed: ("removed".into(), removed_token),
        head,
        checkpoint: last_checkpoint(&log),
    }
}

/// The checks on a core started on the restored store.
async fn after_restore(work: &Path, base: &str, mode: Mode, before: &BeforeRestore) {
    let cred = mode.credential();
    // Entries the backup held unsealed are sealed by this core first.
    sealed(base).await;
    let ids = plugin_ids(base).await;

    // Before the backup: there, and their tokens work.
    for (id, token) in &before.kept {
        assert!(ids.contains(id), "{id} restored: {ids:?}");
        let (status, body) = heartbeat(base, id, token).await;
        assert_eq!(status, 200, "{id}'s token after the restore: {body}");
    }

    // During the backup: each burst plugin is either wholly in it (record, token and
    // its audit entry) or not at all.
    let audited: BTreeSet<String> = registered_in_audit(base).await.into_iter().collect();
    let mut in_backup = 0;
    for (id, token) in &before.burst {
        let (status, body) = heartbeat(base, id, token).await;
        if ids.contains(id) {
            in_backup += 1;
            assert_eq!(status, 200, "{id}: {body}");
            assert!(audited.contains(id), "{id} has its plugin.register entry");
        } else {
            assert_eq!((status, &body["reason"]), (401, &json!("unknown_plugin")));
            assert!(!audited.contains(id), "{id} has no record but an entry");
        }
    }
    eprintln!(
        "{in_backup} of {BURST} plugins registered during the backup are in it (the rest came after its snapshot)"
    );
    let expected: BTreeSet<String> = before
        .kept
        .iter()
        .map(|(id, _)| id.clone())
        .chain(["rotated".into(), "removed".into()])
        .chain(
            before
                .burst
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .map(|(id, _)| id.clone()),
        )
        .collect();
    assert_eq!(ids, expected, "the store is the backup's");
    assert_eq!(
        audited, expected,
        "one plugin.register entry per record, no more"
    );

    // After the backup: gone; its token is refused (its id is unknown), and it must
    // register again as a new plugin — in production with the registration secret.
    let (late, late_token) = &before.late;
    assert!(!ids.contains(late));
    let (status, body) = heartbeat(base, late, late_token).await;
    assert_eq!(
        (status, &body["reason"]),
        (401, &json!("unknown_plugin")),
        "{body}"
    );
    let (status, body) = register(base, late, Some(late_token)).await;
    match mode {
        // Dev mode registers an unknown id with any bearer (or none).
        Mode::Dev => assert_eq!(status, 200, "{body}"),
        Mode::Production => {
            assert_eq!(
                (status, &body["reason"]),
                (401, &json!("registration_secret_required")),
                "{body}"
            );
            let (status, body) = register(base, late, cred).await;
            assert_eq!(status, 200, "{body}");
        }
    }

    // Re-registered after the backup: the restored record holds the old token id, so
    // the new token is revoked and cannot re-register; the id stays taken (409) until
    // an operator deregisters it. The token from before the backup is current again.
    let (rotated, token_before, token_after) = &before.rotated;
    let (status, body) = heartbeat(base, rotated, token_after).await;
    assert_eq!(
        (status, &body["reason"]),
        (401, &json!("revoked_token")),
        "{body}"
    );
    let (status, body) = register(base, rotated, Some(token_after)).await;
    assert_eq!(
        (status, &body["reason"]),
        (401, &json!("revoked_token")),
        "{body}"
    );
    let (status, body) = register(base, rotated, cred).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("already_registered")),
        "{body}"
    );
    let (status, body) = heartbeat(base, rotated, token_before).await;
    assert_eq!(status, 200, "the pre-backup token is current again: {body}");
    cli_deregister(work, base, rotated);
    let token = register_ok(base, rotated, cred).await;
    let (status, body) = heartbeat(base, rotated, &token).await;
    assert_eq!(status, 200, "{body}");

    // Deregistered after the backup: back, and its token works again — the restore
    // undid the revocation, which the operator has to repeat.
    let (removed, removed_token) = &before.removed;
    assert!(ids.contains(removed));
    let (status, body) = heartbeat(base, removed, removed_token).await;
    assert_eq!(status, 200, "{body}");
    cli_deregister(work, base, removed);
    let (status, _) = heartbeat(base, removed, removed_token).await;
    assert_eq!(status, 401);

    // The chain verifies from seq 1 through the backup's entries and everything written
    // since; a checkpoint from after the backup no longer matches.
    let head = sealed(base).await;
    assert_eq!(intact_up_to(&cli_verify(work, base, None)), head);
    let (status, body) = call("GET", format!("{base}/audit/verify"), Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["intact"], true, "{body}");
    let stale = cli_verify(work, base, Some(&before.checkpoint));
    assert_eq!(
        stale.code, 1,
        "a checkpoint from after the backup: {stale:?}"
    );
    assert!(
        stale.stdout.contains("checkpoint_mismatch") || stale.stdout.contains("chain_truncated"),
        "{stale:?}"
    );
    eprintln!(
        "restored chain: intact up to {head} (the first core ended at {}); its shutdown checkpoint: {}",
        before.head,
        stale.stdout.trim()
    );
}

// ---------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------

/// `vivified backup` while the core runs; stop; replace the file; start on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_backup_while_running_and_restore() {
    let tmp = TempDir::new("backup");
    let work = tmp.path().to_path_buf();
    let data = work.join("vivified-data");
    let db = data.join("vivified.db");
    let backups = work.join("backups");
    std::fs::create_dir(&backups).expect("a backups dir");
    let backup_file = backups.join("vivified.db.bak");
    // Dev mode on the default SQLite file; the JWT secret and the audit key are
    // generated and kept in vivified-data/dev-secrets.json.
    let env = [("VIVIFIED_ADMIN_TOKEN", ADMIN)];

    let summary = Arc::new(Mutex::new(None));
    let backup = {
        let (work, db, out, summary) = (
            work.clone(),
            db.clone(),
            backup_file.clone(),
            summary.clone(),
        );
        move || {
            let r = run(vivified(&work).args([
                "backup",
                "--sqlite",
                db.to_str().expect("UTF-8"),
                "--out",
                out.to_str().expect("UTF-8"),
            ]));
            *summary.lock().expect("lock") = Some(r);
        }
    };
    let before = before_restore(&work, &env, Mode::Dev, backup).await;
    let summary = summary.lock().expect("lock").take().expect("it ran");
    assert_eq!(summary.code, 0, "{summary:?}");
    assert!(summary.stderr.is_empty(), "{summary:?}");
    let first = summary.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "backed up {} to {}: ",
            db.display(),
            backup_file.display()
        )) && first.contains("audit chain up to seq"),
        "{summary:?}"
    );
    assert!(
        summary.stdout.contains(&format!(
            "keep {} with it",
            data.join("dev-secrets.json").display()
        )),
        "{summary:?}"
    );
    eprintln!("{}", summary.stdout.trim());

    // A second backup to the same file is refused, and the first is untouched.
    let size = std::fs::metadata(&backup_file).expect("the backup").len();
    let again = run(vivified(&work).args([
        "backup",
        "--sqlite",
        db.to_str().expect("UTF-8"),
        "--out",
        backup_file.to_str().expect("UTF-8"),
    ]));
    assert_eq!(again.code, 2, "{again:?}");
    assert_eq!(
        again.stderr,
        format!(
            "vivified: {}: already exists; a backup never overwrites a file\n",
            backup_file.display()
        )
    );
    assert_eq!(std::fs::metadata(&backup_file).unwrap().len(), size);

    // Restore: the core is stopped; replace the file, drop its -wal and -shm, and the
    // checkpoint file of the chain the backup no longer reaches (the restored
    // database's own checkpoint row matches it).
    std::fs::copy(&backup_file, &db).expect("restore the file");
    for suffix in ["-wal", "-shm", "-checkpoint"] {
        let side = PathBuf::from(format!("{}{suffix}", db.display()));
        if side.exists() {
            std::fs::remove_file(&side).expect("remove a stale side file");
        }
    }
    let core = Core::start(&work, &env).await;
    after_restore(&work, &core.url, Mode::Dev, &before).await;
    core.stop();
}

/// Every refusal of `vivified backup` is one line and exit 2, and writes nothing.
#[test]
fn sqlite_backup_refusals() {
    let tmp = TempDir::new("backup");
    let dir = tmp.path();
    let help = run(vivified(dir).args(["backup", "--help"]));
    assert_eq!(help.code, 0, "{help:?}");
    assert!(
        help.stdout
            .contains("Usage: vivified backup --sqlite <DB> --out <FILE>")
    );

    let not_a_store = dir.join("notes.db");
    std::fs::write(&not_a_store, b"not a database").expect("write");
    let cases = [
        ("missing.db", "out.db", "missing.db: no such file"),
        ("notes.db", "notes.db", "notes.db: already exists"),
        (
            "notes.db",
            "no/such/dir/out.db",
            "no/such/dir: no such directory",
        ),
        ("notes.db", "out.db", "cannot read notes.db: "),
    ];
    for (db, out, message) in cases {
        let r = run(vivified(dir).args(["backup", "--sqlite", db, "--out", out]));
        assert_eq!(r.code, 2, "{db} → {out}: {r:?}");
        assert!(r.stdout.is_empty(), "{r:?}");
        assert!(
            r.stderr.starts_with(&format!("vivified: {message}"))
                && r.stderr.ends_with('\n')
                && r.stderr.lines().count() == 1,
            "{db} → {out}: {r:?}"
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .expect("read the dir")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    left.sort();
    assert_eq!(left, ["notes.db"], "nothing written");
    assert_eq!(std::fs::read(&not_a_store).unwrap(), b"not a database");
}

// ---------------------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------------------

/// `psql ADMIN_URL -c SQL`, which must succeed; its output.
fn psql(admin_url: &str, sql: &str) -> String {
    let r = run(Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            admin_url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null()));
    assert_eq!(r.code, 0, "psql -c {sql:?}: {r:?}");
    r.stdout
}

/// `(&str, &str)` pairs of an owned environment.
fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The major version of a `pg_dump --version`-style line or of `server_version`.
fn major(version: &str) -> u32 {
    version
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `pg_dump -Fc` of a running production core's database; `pg_restore --no-owner` into
/// an empty second database; the core started on that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pg_dump_while_running_and_pg_restore() {
    let Some(admin_url) = services::postgres_url() else {
        return;
    };
    let server = psql(&admin_url, "SHOW server_version");
    for tool in ["pg_dump", "pg_restore"] {
        let v = run(Command::new(tool).arg("--version"));
        assert_eq!(v.code, 0, "{tool} on PATH: {v:?}");
        assert!(
            major(&v.stdout) >= major(&server),
            "{tool} is {} but the server is {}: pg_dump/pg_restore must be of the server's major version or newer",
            v.stdout.trim(),
            server.trim()
        );
    }
    let tmp = TempDir::new("backup");
    let work = tmp.path().to_path_buf();
    let source = ScratchDb::create("vivified_backup")
        .await
        .expect("the variable is set");
    let restored = ScratchDb::create("vivified_backup")
        .await
        .expect("the variable is set");
    let dump = work.join("vivified.dump");

    let env = |url: &str| -> Vec<(String, String)> {
        [
            ("VIVIFIED_MODE", "production"),
            ("VIVIFIED_STORE", url),
            ("VIVIFIED_DB_MAX_CONNECTIONS", "4"),
            ("JWT_SECRET", JWT),
            ("VIVIFIED_ADMIN_TOKEN", ADMIN),
            ("VIVIFIED_REGISTRATION_SECRET", REGISTRATION),
            ("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true"),
            ("VIVIFIED_AUDIT_KEY", AUDIT_KEY),
            ("VIVIFIED_LOG_FORMAT", "json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };

    let first_env = env(source.url());
    let backup = {
        let (url, dump) = (source.url().to_owned(), dump.clone());
        move || {
            let r = run(Command::new("pg_dump")
                .args(["-Fc", "-d", &url, "-f"])
                .arg(&dump)
                .stdin(Stdio::null()));
            assert_eq!(r.code, 0, "pg_dump: {r:?}");
        }
    };
    let before = before_restore(&work, &borrowed(&first_env), Mode::Production, backup).await;

    // Restore into the empty database, before any core starts on it.
    let r = run(Command::new("pg_restore")
        .args([
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "-d",
            restored.url(),
        ])
        .arg(&dump)
        .stdin(Stdio::null()));
    assert_eq!(r.code, 0, "pg_restore: {r:?}");

    let second_env = env(restored.url());
    let core = Core::start(&work, &borrowed(&second_env)).await;
    after_restore(&work, &core.url, Mode::Production, &before).await;
    core.stop();
}
