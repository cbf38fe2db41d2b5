//! `vivified healthcheck`: exit 0 on 200, 1 on anything else — never 2, which
//! container engines reserve.

use std::time::{Duration, Instant};

use crate::common::{Core, Run, TempDir, free_port, vivified};

#[test]
fn a_healthy_core_is_exit_0_and_silent() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let run = Run::of(vivified(dir.path()).args([
        "healthcheck",
        "--url",
        &format!("{}/health", core.url()),
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));

    // A URL without a path probes /health.
    let run = Run::of(vivified(dir.path()).args(["healthcheck", "--url", &core.url()]));
    assert_eq!(run.code, 0, "{run:?}");
    // Any path may be probed, e.g. readiness.
    let run = Run::of(vivified(dir.path()).args([
        "healthcheck",
        "--url",
        &format!("{}/ready", core.url()),
    ]));
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn anything_but_200_is_exit_1_with_one_line() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let url = format!("{}/no-such-path", core.url());
    let run = Run::of(vivified(dir.path()).args(["healthcheck", "--url", &url]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", &format!("unhealthy: {url} answered 404"));

    let url = format!("http://127.0.0.1:{}/health", free_port());
    let run = Run::of(vivified(dir.path()).args(["healthcheck", "--url", &url]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", &format!("unhealthy: {url}: "));

    for bad in ["ftp://127.0.0.1:1/health", "not a url"] {
        let run = Run::of(vivified(dir.path()).args(["healthcheck", "--url", bad]));
        assert_eq!(
            run.code, 1,
            "a bad URL is unhealthy, not Docker's reserved 2: {run:?}"
        );
        run.assert_one_error_line("vivified", "unhealthy: --url");
    }
    // An https URL is probed (refused here: nothing listens) and an unreadable CA file
    // is unhealthy too, never 2.
    let run =
        Run::of(vivified(dir.path()).args(["healthcheck", "--url", "https://127.0.0.1:1/health"]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "unhealthy: https://127.0.0.1:1/health: ");
    let run = Run::of(vivified(dir.path()).args([
        "healthcheck",
        "--url",
        "https://127.0.0.1:1/health",
        "--ca-cert",
        "/nonexistent/ca.pem",
    ]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line(
        "vivified",
        "unhealthy: --ca-cert (VIVIFIED_CA_CERT) /nonexistent/ca.pem: cannot be read",
    );
}

#[test]
fn a_server_that_never_answers_is_cut_off_by_the_timeout() {
    // Accepts connections (the kernel's backlog does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", silent.local_addr().unwrap());
    let dir = TempDir::new("cli");
    let started = Instant::now();
    let run =
        Run::of(vivified(dir.path()).args(["healthcheck", "--timeout", "300ms", "--url", &url]));
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "unhealthy: ");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(silent);
}
