//! End to end over real processes: the `user-management-plugin` binary and the
//! `vivified-server` binary, on free loopback ports, in temporary directories.
//!
//! Cargo gives this package `CARGO_BIN_EXE_user-management-plugin` but not the core's
//! binary (it belongs to another package), so the first test to need the core builds it
//! with `cargo build -p vivified-server` into the same target directory and profile as
//! this test (a no-op when `cargo test --workspace` already built it). Set
//! `VIVIFIED_SERVER_BIN` to use a binary built elsewhere.
//!
//! Every process is started by the test, killed by its guard when the test ends (also
//! on panic), and only through its own handle.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const ADMIN_TOKEN: &str = "e2e-admin-Q7w2E9r4T6y1U3i5";
const JWT_SECRET: &str = "e2e-jwt-Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";

/// The workspace root.
fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `vivified-server` binary of this target directory and profile, built once.
fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("VIVIFIED_SERVER_BIN") {
            return PathBuf::from(bin);
        }
        let plugin = Path::new(env!("CARGO_BIN_EXE_user-management-plugin"));
        let profile_dir = plugin.parent().expect("the binary's directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let status = Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", target_dir)
            .args([
                "build",
                "--quiet",
                "-p",
                "vivified-server",
                "--bin",
                "vivified-server",
            ])
            .args(["--profile", profile])
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "cargo build -p vivified-server failed: {status}"
        );
        let bin = profile_dir.join(format!("vivified-server{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A new empty directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vivified-e2e-{tag}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process with its output captured; killed on drop.
struct Proc {
    name: &'static str,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

fn capture(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            into.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
}

impl Proc {
    /// Starts `bin` in `dir` with only `PATH` and `env` in its environment.
    fn spawn(
        name: &'static str,
        bin: &Path,
        dir: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir)
            .env_clear()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().expect("piped"), stdout.clone());
        capture(child.stderr.take().expect("piped"), stderr.clone());
        Self {
            name,
            child,
            stdout,
            stderr,
            exited: None,
        }
    }

    fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Parsed stdout lines (every one must be a JSON object).
    fn log_lines(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{} logged a non-JSON line ({e}): {l}", self.name))
            })
            .collect()
    }

    fn count(&self, message: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .count()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} {}", self.name);
    }

    /// Waits for the process to exit, at most `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, like a crash.
    fn crash(&mut self) {
        self.signal("-KILL");
        self.wait_exit(WAIT);
    }

    /// SIGTERM, and the exit status.
    fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait_exit(WAIT)
    }

    fn describe(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client")
}

/// Polls `f` every 50 ms until it returns `Some`, at most `WAIT`.
async fn eventually<T, F, Fut>(what: &str, procs: &[&Proc], mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = procs.iter().map(|p| p.describe()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_json(url: &str, token: Option<&str>) -> Option<(u16, Value)> {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The core on `port`, its data in `dir`.
fn start_core(dir: &Path, port: u16, store: &str) -> Proc {
    Proc::spawn(
        "core",
        server_binary(),
        dir,
        &["--bind", &format!("127.0.0.1:{port}")],
        &[
            ("VIVIFIED_STORE", store.to_owned()),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("VIVIFIED_HEARTBEAT_INTERVAL", "200ms".to_owned()),
        ],
    )
}

/// The plugin on `port`, talking to the core on `core_port`, its token in `dir`.
fn start_plugin(dir: &Path, port: u16, core_port: u16) -> Proc {
    Proc::spawn(
        "plugin",
        Path::new(env!("CARGO_BIN_EXE_user-management-plugin")),
        dir,
        &[],
        &[
            ("CORE_URL", format!("http://127.0.0.1:{core_port}")),
            ("PLUGIN_BIND", format!("127.0.0.1:{port}")),
            (
                "PLUGIN_TOKEN_FILE",
                dir.join("plugin/token.json").display().to_string(),
            ),
            ("PLUGIN_BACKOFF_INITIAL", "100ms".to_owned()),
            ("PLUGIN_BACKOFF_MAX", "500ms".to_owned()),
            ("PLUGIN_REQUEST_TIMEOUT", "2s".to_owned()),
            ("PLUGIN_INTROSPECTION_CACHE", "1s".to_owned()),
        ],
    )
}

async fn record(core_port: u16) -> Option<Value> {
    match get_json(
        &format!("http://127.0.0.1:{core_port}/plugins/user-management"),
        Some(ADMIN_TOKEN),
    )
    .await
    {
        Some((200, v)) => Some(v),
        _ => None,
    }
}

fn token_in(dir: &Path) -> String {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("plugin/token.json")).expect("token file"),
    )
    .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_first_then_the_core_then_a_core_crash_and_restart_on_sqlite() {
    let _ = server_binary();
    let dir = TempDir::new("restart");
    let (core_port, plugin_port) = (free_port(), free_port());
    let store = format!("sqlite://{}/v.db", dir.0.display());

    // The plugin first: it serves its own API and keeps trying to register.
    let plugin = start_plugin(&dir.0, plugin_port, core_port);
    let health = eventually("the plugin's /health", &[&plugin], || async {
        get_json(&format!("http://127.0.0.1:{plugin_port}/health"), None)
            .await
            .filter(|(s, _)| *s == 200)
            .map(|(_, v)| v)
    })
    .await;
    assert_eq!(health["registered"], false, "{health}");
    eventually("a few failed registration attempts", &[&plugin], || async {
        (plugin.count("core not reachable; retrying registration") >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The core, seconds later: the plugin registers and its heartbeats arrive.
    let mut core = start_core(&dir.0, core_port, &store);
    let first = eventually("the plugin listed as active", &[&plugin, &core], || async {
        let list = get_json(
            &format!("http://127.0.0.1:{core_port}/plugins"),
            Some(ADMIN_TOKEN),
        )
        .await?;
        let rec = list.1["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["plugin_id"] == "user-management")?
            .clone();
        (rec["status"] == "active" && rec["health"] == "healthy").then_some(rec)
    })
    .await;
    eventually("a later heartbeat", &[&plugin, &core], || async {
        record(core_port)
            .await
            .filter(|r| r["last_heartbeat"] != first["last_heartbeat"])
    })
    .await;
    let (_, health) = get_json(&format!("http://127.0.0.1:{plugin_port}/health"), None)
        .await
        .unwrap();
    assert_eq!(health["core"], "registered");
    let token = token_in(&dir.0);

    // The core crashes; the plugin notices and keeps going.
    core.crash();
    eventually("the plugin noticing the outage", &[&plugin], || async {
        (plugin.count("heartbeat failed; core unavailable, retrying") >= 1).then_some(())
    })
    .await;
    let restarted_at = time::OffsetDateTime::now_utc();
    let core = start_core(&dir.0, core_port, &store);
    let after = eventually(
        "heartbeats to the restarted core",
        &[&plugin, &core],
        || async {
            let r = record(core_port).await?;
            let last = time::OffsetDateTime::parse(
                r["last_heartbeat"].as_str()?,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            (last > restarted_at && r["status"] == "active").then_some(r)
        },
    )
    .await;
    assert_eq!(
        after["registered_at"], first["registered_at"],
        "the same registration carried on"
    );
    assert_eq!(
        plugin.count("registered with the core"),
        1,
        "no re-registration was needed\n{}",
        plugin.describe()
    );
    assert_eq!(token_in(&dir.0), token, "the same token");
    assert!(plugin.count("heartbeats accepted") >= 1);

    // Nothing secret in any output; every plugin log line is structured.
    let mut plugin = plugin;
    let status = plugin.terminate();
    assert!(
        status.success(),
        "the plugin stops cleanly on SIGTERM: {status}\n{}",
        plugin.describe()
    );
    for text in [
        plugin.stdout(),
        plugin.stderr(),
        core.stdout(),
        core.stderr(),
    ] {
        assert!(!text.contains(&token), "a token was printed");
        assert!(!text.contains(ADMIN_TOKEN) && !text.contains(JWT_SECRET));
    }
    let lines = plugin.log_lines();
    assert!(
        lines
            .iter()
            .all(|l| l["fields"]["message"].is_string() && l["level"].is_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "plugin stopped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_api_checks_callers_with_the_core_and_a_restarted_plugin_keeps_its_id() {
    let dir = TempDir::new("users");
    let (core_port, plugin_port) = (free_port(), free_port());
    let core = start_core(&dir.0, core_port, "memory");
    let mut plugin = start_plugin(&dir.0, plugin_port, core_port);
    let first = eventually("the plugin active", &[&plugin, &core], || async {
        record(core_port).await.filter(|r| r["status"] == "active")
    })
    .await;

    // Two callers: one declares handles_pii, the other does not.
    let register = |id: &'static str, pii: bool| async move {
        let manifest = json!({
            "id": id, "name": id, "version": "1.0.0", "contracts": [],
            "traits": if pii { json!(["handles_pii"]) } else { json!([]) },
            "security": {"authentication_required": pii, "data_classification": if pii { json!(["pii"]) } else { json!(["internal"]) }},
            "compliance": {"hipaa_controls": [], "audit_level": "basic"}
        });
        let resp = http()
            .post(format!("http://127.0.0.1:{core_port}/plugins/register"))
            .json(&manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let reader = register("pii-reader", true).await;
    let basic = register("basic-reader", false).await;
    let users = format!("http://127.0.0.1:{plugin_port}/api/users");

    let (status, _) = get_json(&format!("{users}/1"), None).await.unwrap();
    assert_eq!(status, 401, "no token");
    let mut forged: Vec<char> = reader.chars().collect();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == 'x' { 'y' } else { 'x' };
    let forged: String = forged.into_iter().collect();
    let (status, _) = get_json(&format!("{users}/1"), Some(&forged))
        .await
        .unwrap();
    assert_eq!(status, 401, "forged token");
    let (status, body) = get_json(&format!("{users}/1"), Some(&basic)).await.unwrap();
    assert_eq!(status, 403, "registered, without handles_pii: {body}");
    let (status, body) = get_json(&format!("{users}/1"), Some(&reader))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["email"], "alice@example.com");
    let (status, _) = get_json(&format!("{users}/404"), Some(&reader))
        .await
        .unwrap();
    assert_eq!(status, 404);

    // Restart the plugin: it re-registers with its kept token (no 409).
    assert!(plugin.terminate().success());
    assert_eq!(plugin.count("user-management API stopped"), 1);
    assert!(plugin.count("user served") >= 1 && plugin.count("user lookup refused") >= 2);
    let first_run = format!("{}{}", plugin.stdout(), plugin.stderr());
    let plugin = start_plugin(&dir.0, plugin_port, core_port);
    eventually(
        "the restarted plugin registered",
        &[&plugin, &core],
        || async { (plugin.count("registered with the core") == 1).then_some(()) },
    )
    .await;
    let line = plugin
        .log_lines()
        .into_iter()
        .find(|l| l["fields"]["message"] == "registered with the core")
        .unwrap();
    assert_eq!(
        line["fields"]["credential"],
        "token",
        "{}",
        plugin.describe()
    );
    assert_eq!(
        plugin.count("using the token kept from the previous run"),
        1
    );
    let again = record(core_port).await.unwrap();
    assert_eq!(again["registered_at"], first["registered_at"]);
    let (status, _) = get_json(&format!("{users}/2"), Some(&reader))
        .await
        .unwrap();
    assert_eq!(status, 200);

    // No PII and no token in the plugin's output.
    let out = format!("{first_run}{}{}", plugin.stdout(), plugin.stderr());
    for secret in [
        "alice",
        "bob",
        "example.com",
        reader.as_str(),
        basic.as_str(),
    ] {
        assert!(!out.contains(secret), "the plugin printed {secret:?}");
    }
}
