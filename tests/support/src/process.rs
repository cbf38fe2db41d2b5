//! A `vivified-server` binary as a child process: a free loopback port, a clean
//! environment, a working directory of its own, captured stdout and stderr, waiting for
//! `/health` or for log lines, and a guard that always kills it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fs::TempDir;
use crate::net::free_port;

/// How long a server may take to answer `/health` after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `binary` run in `dir` with an empty environment (plus `PATH`) and stdin closed: what
/// a test sets is all the process sees.
pub fn isolated(binary: impl AsRef<std::ffi::OsStr>, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear().current_dir(dir).stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// Any child process with its stdout and stderr captured (by reader threads), killed if
/// it still runs when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    stdout: Captured,
    stderr: Captured,
}

impl Guarded {
    /// Starts `cmd` with stdin closed and stdout and stderr piped into buffers.
    ///
    /// # Panics
    /// If the process cannot start.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process");
        let (stdout, stderr) = (Captured::default(), Captured::default());
        stdout.spawn_reader(child.stdout.take().expect("piped stdout"));
        stderr.spawn_reader(child.stderr.take().expect("piped stderr"));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Its exit code once it exits within `timeout` (`None`: it still runs, or a signal
    /// ended it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM (with the `kill` command), then [`Guarded::wait_exit`].
    ///
    /// # Panics
    /// If `kill` fails.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
        self.wait_exit(timeout)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A command that ran to its end: exit code, stdout and stderr as text.
#[derive(Debug)]
pub struct Ran {
    /// The exit code.
    pub code: i32,
    /// Everything on stdout (UTF-8).
    pub stdout: String,
    /// Everything on stderr (UTF-8).
    pub stderr: String,
}

impl Ran {
    /// Runs `cmd` to completion.
    ///
    /// # Panics
    /// If it cannot start, is killed by a signal, or writes anything but UTF-8.
    pub fn of(cmd: &mut Command) -> Self {
        let out = cmd.output().expect("run the command");
        Self {
            code: out.status.code().expect("exited, not killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
        }
    }

    /// Asserts stderr is exactly one `<prefix>: …` line containing `needle` (the shape
    /// of the binaries' one-line errors, e.g. `vivified: …`).
    ///
    /// # Panics
    /// If it is not.
    pub fn assert_one_error_line(&self, prefix: &str, needle: &str) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(
            lines[0].starts_with(&format!("{prefix}: ")) && lines[0].contains(needle),
            "stderr {:?} should contain {needle:?}",
            lines[0]
        );
    }
}

/// An HTTP client that ignores any proxy of the test environment (ring installed as
/// the process's TLS provider first, as the core's clients do).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// A captured output stream, filled line by line by a reader thread.
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    /// Reads `stream` line by line into this buffer on a thread of its own.
    pub fn spawn_reader(&self, stream: impl Read + Send + 'static) -> JoinHandle<()> {
        let buf = self.0.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => buf
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&String::from_utf8_lossy(&line)),
                }
            }
        })
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How to start a server: the binary, its environment (on top of a cleared one plus
/// `PATH`) and where it binds (`--bind HOST:PORT` on a free port).
#[derive(Clone, Debug)]
pub struct Spawn {
    binary: PathBuf,
    env: Vec<(String, String)>,
    bind_host: Option<String>,
}

impl Spawn {
    /// `binary` (a `vivified-server`: in its own package's tests,
    /// `env!("CARGO_BIN_EXE_vivified-server")`) on 127.0.0.1, in dev mode, with an
    /// otherwise empty environment.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            env: Vec::new(),
            bind_host: None,
        }
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Listens on `host` (e.g. `0.0.0.0`) instead of 127.0.0.1.
    pub fn bind_host(mut self, host: &str) -> Self {
        self.bind_host = Some(host.to_owned());
        self
    }

    /// Starts the binary on a free port without waiting for it.
    pub fn spawn(&self) -> Server {
        let port = free_port();
        let host = self.bind_host.as_deref().unwrap_or("127.0.0.1");
        let workdir = TempDir::new("proc");
        let mut cmd = Command::new(&self.binary);
        // A fresh working directory: the default data directory (`./vivified-data`, the
        // SQLite file and dev secrets) never outlives the test or leaks between tests.
        cmd.current_dir(workdir.path());
        cmd.env_clear()
            .args(["--bind", &format!("{host}:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start vivified-server");
        let stdout = Captured::default();
        let stderr = Captured::default();
        let readers = vec![
            stdout.spawn_reader(child.stdout.take().expect("piped stdout")),
            stderr.spawn_reader(child.stderr.take().expect("piped stderr")),
        ];
        Server {
            child: Some(child),
            port,
            stdout,
            stderr,
            readers,
            status: None,
            _workdir: workdir,
        }
    }

    /// Starts the binary and waits until `GET /health` answers 200. A start that lost
    /// the race for its port (someone else took it between our probe and the bind) is
    /// retried on another port.
    pub async fn start(&self) -> Server {
        for _ in 0..3 {
            let mut server = self.spawn();
            match server.wait_healthy(START_TIMEOUT).await {
                Ok(()) => return server,
                Err(why) if server.stderr().contains("cannot listen") => {
                    eprintln!("retrying on another port: {why}");
                }
                Err(why) => panic!(
                    "server did not come up: {why}\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    server.stderr(),
                    server.stdout()
                ),
            }
        }
        panic!("no free port after three attempts");
    }

    /// Runs the binary until it exits (it must, within `timeout`) and returns its exit
    /// status and its complete stdout and stderr.
    pub fn run_to_exit(&self, timeout: Duration) -> Exited {
        let mut server = self.spawn();
        let status = server.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "expected the server to exit, it still runs\n--- stderr ---\n{}",
                server.stderr()
            )
        });
        Exited {
            status,
            stdout: server.stdout(),
            stderr: server.stderr(),
        }
    }
}

/// A process that ran to its end.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// A running (or exited) `vivified-server`. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    port: u16,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// Its working directory, removed after the process is stopped (fields drop after
    /// `drop`).
    _workdir: TempDir,
}

impl Server {
    /// The port it was told to listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The loopback address it serves on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stdout captured so far (complete once the process has exited).
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Stdout once `done` holds for it, or as it stands after `timeout`: a line logged
    /// just now reaches stdout with the log writer's next batch, up to its linger later.
    pub async fn stdout_when(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if done(&out) || Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stderr captured so far (complete once the process has exited).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Polls `GET /health` until it answers 200. Fails early if the process exits.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let client = client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exited() {
                return Err(format!("exited before it was healthy: {status}"));
            }
            if let Ok(resp) = client.get(self.url("/health")).send().await
                && resp.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("/health did not answer 200 within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `pred` holds for the captured stdout (log lines are written by the
    /// server and collected by a thread, so they arrive a moment after the response).
    pub async fn wait_stdout(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_for(&self.stdout, timeout, pred, "stdout").await
    }

    /// Waits until `pred` holds for the captured stderr.
    pub async fn wait_stderr(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_for(&self.stderr, timeout, pred, "stderr").await
    }

    /// Sends SIGTERM (with the `kill` command: no libc, no nix).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// The exit status, if the process has exited (without waiting).
    fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.status = Some(status);
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit; once it has, its output readers
    /// are joined so `stdout()`/`stderr()` are complete. `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exited() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL (`kill -9`: no drain, no cleanup, like a crash) and waits for the
    /// process to die; its output is complete afterwards.
    pub fn kill_hard(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-KILL", &self.pid().to_string()])
            .status()
            .expect("run kill -KILL");
        assert!(status.success(), "kill -KILL failed: {status}");
        self.wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("the server survived SIGKILL for 10 s"))
    }

    /// SIGTERM, then waits (at most `timeout`) for a clean exit; panics otherwise.
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.terminate();
        self.wait_exit(timeout)
            .unwrap_or_else(|| panic!("the server did not exit within {timeout:?} of SIGTERM"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

async fn wait_for(
    captured: &Captured,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
    what: &str,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = captured.text();
        if pred(&text) {
            return text;
        }
        if Instant::now() > deadline {
            panic!("{what} never matched within {timeout:?}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Parses every stdout line as JSON; panics naming the first line that is not.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The top-level `trace_id` of a JSON log line.
pub fn trace_id(line: &serde_json::Value) -> Option<&str> {
    line.get("trace_id").and_then(|v| v.as_str())
}

/// `fields.message` of a JSON log line.
pub fn message(line: &serde_json::Value) -> &str {
    line.get("message")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// `target` of a JSON log line.
pub fn target(line: &serde_json::Value) -> &str {
    line.get("target")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}
