//! Shared by the process tests of this package (`e2e.rs`, `compose.rs`): the real
//! `user-management-plugin` and `vivified-server` binaries on free loopback ports, in
//! temporary directories.
//!
//! Cargo gives this package `CARGO_BIN_EXE_user-management-plugin` but not the core's
//! binary (it belongs to another package), so the first test to need the core builds it
//! with `cargo build -p vivified-server` into the same target directory and profile as
//! this test (a no-op when `cargo test --workspace` already built it). Set
//! `VIVIFIED_SERVER_BIN` to use a binary built elsewhere.
//!
//! Every process is started by the test, killed by its guard when the test ends (also
//! on panic), and only through its own handle.
#![allow(dead_code, unused_imports)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
pub use vivified_test_support::fs::TempDir;
pub use vivified_test_support::net::free_port;

pub const WAIT: Duration = Duration::from_secs(20);
pub const ADMIN_TOKEN: &str = "e2e-admin-Q7w2E9r4T6y1U3i5";
pub const JWT_SECRET: &str = "e2e-jwt-Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `vivified-server` binary of this target directory and profile, built once.
pub fn server_binary() -> &'static Path {
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

/// A child process with its output captured; killed on drop.
pub struct Proc {
    name: &'static str,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

pub fn capture(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
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
    pub fn spawn(
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

    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Parsed stdout lines (every one must be a JSON object).
    pub fn log_lines(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{} logged a non-JSON line ({e}): {l}", self.name))
            })
            .collect()
    }

    pub fn count(&self, message: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .count()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} {}", self.name);
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
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
    pub fn crash(&mut self) {
        self.signal("-KILL");
        self.wait_exit(WAIT);
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait_exit(WAIT)
    }

    pub fn describe(&self) -> String {
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

pub fn http() -> reqwest::Client {
    vivified_plugin_sdk::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client")
}

/// Polls `f` every 50 ms until it returns `Some`, at most `WAIT`.
pub async fn eventually<T, F, Fut>(what: &str, procs: &[&Proc], mut f: F) -> T
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

pub async fn get_json(url: &str, token: Option<&str>) -> Option<(u16, Value)> {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The core on `port`, its data in `dir`, in dev mode.
pub fn start_core(dir: &Path, port: u16, store: &str) -> Proc {
    start_core_with(
        dir,
        port,
        &[
            ("VIVIFIED_STORE", store.to_owned()),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("VIVIFIED_HEARTBEAT_INTERVAL", "200ms".to_owned()),
        ],
    )
}

/// The core on `127.0.0.1:port`, its working directory `dir`, with only `env`.
pub fn start_core_with(dir: &Path, port: u16, env: &[(&str, String)]) -> Proc {
    Proc::spawn(
        "core",
        server_binary(),
        dir,
        &["--bind", &format!("127.0.0.1:{port}")],
        env,
    )
}

/// The plugin on `port`, talking to the core on `core_port`, its token in `dir`.
pub fn start_plugin(dir: &Path, port: u16, core_port: u16) -> Proc {
    start_plugin_with(dir, port, &format!("http://127.0.0.1:{core_port}"), &[])
}

/// The plugin on `port`, talking to the core at `core_url`, its token in `dir`, with
/// `extra` added to its environment.
pub fn start_plugin_with(dir: &Path, port: u16, core_url: &str, extra: &[(&str, String)]) -> Proc {
    let mut env = vec![
        ("CORE_URL", core_url.to_owned()),
        ("PLUGIN_BIND", format!("127.0.0.1:{port}")),
        (
            "PLUGIN_TOKEN_FILE",
            dir.join("plugin/token.json").display().to_string(),
        ),
        ("PLUGIN_BACKOFF_INITIAL", "100ms".to_owned()),
        ("PLUGIN_BACKOFF_MAX", "500ms".to_owned()),
        ("PLUGIN_REQUEST_TIMEOUT", "2s".to_owned()),
        ("PLUGIN_INTROSPECTION_CACHE", "1s".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    Proc::spawn(
        "plugin",
        Path::new(env!("CARGO_BIN_EXE_user-management-plugin")),
        dir,
        &[],
        &env,
    )
}

pub async fn record(core_port: u16) -> Option<Value> {
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

pub fn token_in(dir: &Path) -> String {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("plugin/token.json")).expect("token file"),
    )
    .unwrap();
    v["token"].as_str().unwrap().to_owned()
}
