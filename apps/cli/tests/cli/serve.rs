//! `vivified serve`: the core from the CLI, with the server's settings and start-up.

use std::time::{Duration, Instant};

use crate::common::{Run, TempDir, free_port, vivified};
use vivified_test_support::process::Guarded;

/// Starts `vivified serve` on a free port with the memory store and waits until the
/// CLI's own health check passes, as a container engine would. A start that lost the
/// race for its port (taken between the probe and the bind) is retried on another.
fn start_serve(dir: &std::path::Path) -> (Guarded, String) {
    for _ in 0..3 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut served = Guarded::spawn(vivified(dir).env("VIVIFIED_STORE", "memory").args([
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
            if served.exited() {
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

    assert_eq!(
        served.terminate(Duration::from_secs(30)),
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
        "production mode refuses to start: no token signing key: set VIVIFIED_SIGNING_KEYS (Ed25519 key files, recommended) or JWT_SECRET",
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
