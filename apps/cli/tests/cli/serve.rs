//! `vivified serve`: the core from the CLI, with the server's settings and start-up.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Run, TempDir, free_port, vivified};

/// A `vivified serve` child, killed on drop; stderr collected by a thread.
struct Served {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vivified serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `vivified serve` on a free port with the memory store and waits until the
/// CLI's own health check passes, as a container engine would. A start that lost the
/// race for its port (taken between the probe and the bind) is retried on another.
fn start_serve(dir: &std::path::Path) -> (Served, String) {
    for _ in 0..3 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut served = Served::spawn(vivified(dir).env("VIVIFIED_STORE", "memory").args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ]));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = Run::of(vivified(dir).args(["healthcheck", "--url", &url]));
            if run.code == 0 {
                return (served, url);
            }
            if served.child.try_wait().expect("try_wait").is_some() {
                assert!(
                    served.stderr().contains("cannot listen"),
                    "serve exited: {}",
                    served.stderr()
                );
                break; // lost the port: another attempt
            }
            assert!(
                Instant::now() < deadline,
                "the core did not come up: {}",
                served.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("no free port after three attempts");
}

#[test]
fn serve_starts_the_core_and_stops_on_sigterm() {
    let dir = TempDir::new("cli");
    let (mut served, url) = start_serve(dir.path());
    let banner = served.stderr();
    assert!(banner.contains("DEV MODE"), "{banner}");
    assert!(banner.contains(&format!("listening on {url}")), "{banner}");
    let token = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("export VIVIFIED_ADMIN_TOKEN="))
        .expect("dev mode shows the generated admin token");

    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_ADMIN_TOKEN", token)
            .args(["plugins", "list", "--core-url", &url]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "no plugins registered\n");
    assert!(
        !dir.join("vivified-data").exists(),
        "the memory store writes nothing"
    );

    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .expect("run kill -TERM");
    assert!(status.success());
    assert_eq!(
        served.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        served.stderr()
    );
}

#[test]
fn serve_refuses_bad_settings_with_one_line_and_exit_2() {
    let dir = TempDir::new("cli");
    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_MODE", "production")
            .args(["serve", "--bind", "127.0.0.1:0"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line(
        "vivified",
        "production mode refuses to start: JWT_SECRET (or VIVIFIED_JWT_SECRET) is not set",
    );

    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_TOKEN_TTL", "soon")
            .env("VIVIFIED_STORE", "memory")
            .args(["serve"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "VIVIFIED_TOKEN_TTL: ");

    let run = Run::of(vivified(dir.path()).env("VIVIFIED_STORE", "memory").args([
        "serve",
        "--config",
        "missing.toml",
    ]));
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "config file missing.toml");
}

#[test]
fn every_command_has_help() {
    let dir = TempDir::new("cli");
    for args in [
        &["--help"][..],
        &["validate", "--help"],
        &["serve", "--help"],
        &["plugins", "--help"],
        &["plugins", "list", "--help"],
        &["plugins", "show", "--help"],
        &["plugins", "disable", "--help"],
        &["plugins", "enable", "--help"],
        &["plugins", "deregister", "--help"],
        &["audit", "--help"],
        &["audit", "verify", "--help"],
        &["audit", "tail", "--help"],
        &["healthcheck", "--help"],
    ] {
        let run = Run::of(vivified(dir.path()).args(args));
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert!(
            run.stdout.contains("Usage: vivified"),
            "{args:?}: {}",
            run.stdout
        );
    }
    let run = Run::of(vivified(dir.path()).arg("--version"));
    assert_eq!(
        run.stdout.trim(),
        format!("vivified {}", env!("CARGO_PKG_VERSION"))
    );
}
