//! `vivified plugins …` against a real core started in-process.

use serde_json::Value;

use crate::common::{ADMIN_TOKEN, Core, Run, TempDir, free_port, vivified};

/// No run may ever show the admin token.
fn assert_no_token(run: &Run) {
    assert!(
        !run.stdout.contains(ADMIN_TOKEN) && !run.stderr.contains(ADMIN_TOKEN),
        "the admin token leaked: {run:?}"
    );
}

#[test]
fn list_prints_every_plugin_as_a_table_sorted_by_id() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let run = Run::of(core.cli(dir.path()).args(["plugins", "list"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "no plugins registered\n");

    let token = core.register("user-management");
    core.register("billing");
    core.register("audit-export");
    core.heartbeat("user-management", &token);
    let run = Run::of(core.cli(dir.path()).args(["plugins", "list"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    assert_no_token(&run);
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "ID",
            "VERSION",
            "STATUS",
            "HEALTH",
            "ENABLED",
            "LAST",
            "HEARTBEAT"
        ]
    );
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert_eq!(
        lines[1],
        ["audit-export", "1.0.0", "registered", "unknown", "yes", "-"]
    );
    assert_eq!(lines[2][0], "billing");
    assert_eq!(
        &lines[3][..5],
        ["user-management", "1.0.0", "active", "degraded", "yes"]
    );
    assert!(
        lines[3][5].ends_with('Z'),
        "an RFC 3339 time: {}",
        lines[3][5]
    );
}

#[test]
fn list_json_is_the_cores_records_across_pages() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    // One more than the largest page, so the CLI must follow `next_after`.
    let ids: Vec<String> = (0..1001).map(|i| format!("p-{i:04}")).collect();
    for id in &ids {
        core.register(id);
    }
    let run = Run::of(core.cli(dir.path()).args(["plugins", "list", "--json"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records: Vec<Value> = serde_json::from_str(&run.stdout).expect("a JSON array");
    let got: Vec<&str> = records
        .iter()
        .map(|r| r["plugin_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids, "every plugin once, in order");
    let (_, first) = core.record("p-0000");
    assert_eq!(
        records[0], first,
        "records exactly as the core answers them"
    );
}

#[test]
fn show_prints_one_record_and_json_is_the_record() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let token = core.register("user-management");
    core.heartbeat("user-management", &token);

    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "show", "user-management"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_token(&run);
    // The fields, then a blank line and the instances' table.
    let fields: Vec<(&str, &str)> = run
        .stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_once("  ").map(|(k, v)| (k, v.trim())).unwrap())
        .collect();
    let instances: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("INSTANCE"))
        .collect();
    assert_eq!(instances.len(), 2, "one instance: {}", run.stdout);
    assert!(instances[1].starts_with("default"), "{}", run.stdout);
    let get = |k: &str| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
    assert_eq!(get("plugin_id"), Some("user-management"));
    assert_eq!(get("name"), Some("User Management Plugin"));
    assert_eq!(get("status"), Some("active"));
    assert_eq!(get("health"), Some("degraded"));
    assert_eq!(get("enabled"), Some("yes"));
    assert_eq!(get("disabled_reason"), Some("-"));
    assert_eq!(get("contracts"), Some("IdentityPlugin"));

    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "show", "user-management", "--json"]),
    );
    assert_eq!(run.code, 0);
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown, core.record("user-management").1);
}

#[test]
fn deregister_removes_the_plugin_and_a_second_time_is_the_cores_404() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let token = core.register("user-management");

    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "deregister", "user-management"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "deregistered user-management\n");
    assert_eq!(core.record("user-management").0, 404);
    let (status, body) = core.request(
        reqwest::Method::POST,
        "/plugins/user-management/heartbeat",
        Some(&token),
        None,
    );
    assert_eq!(status, 401, "its token stopped working: {body}");

    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "deregister", "user-management"]),
    );
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "the core answered 404 not_found");

    core.register("other");
    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "deregister", "other", "--json"]),
    );
    assert_eq!(run.code, 0);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"deregistered": "other"}));
}

#[test]
fn the_cores_refusals_are_one_line_and_exit_1() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let run = Run::of(core.cli(dir.path()).args(["plugins", "show", "nobody"]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "the core answered 404 not_found: ");
    assert_eq!(run.stdout, "");

    let run = Run::of(
        core.cli(dir.path())
            .env("VIVIFIED_ADMIN_TOKEN", "not-the-admin-token-0123456789")
            .args(["plugins", "list"]),
    );
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line(
        "vivified",
        "the core answered 401 unauthorized (invalid_token)",
    );
    assert!(!run.stderr.contains("not-the-admin-token"));
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_CORE_URL", core.url())
            .args(["plugins", "list"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "nor VIVIFIED_ADMIN_TOKEN is set");

    let run = Run::of(core.cli(dir.path()).args(["plugins", "show", "../admin"]));
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "`../admin` is not a plugin id");

    let run = Run::of(core.cli(dir.path()).args([
        "plugins",
        "list",
        "--core-url",
        "ftp://user:pw@core.example:8443",
    ]));
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "only http:// and https:// URLs are supported");
    assert!(!run.stderr.contains("pw"), "{}", run.stderr);

    let run = Run::of(core.cli(dir.path()).args(["plugins", "disable", "x"]));
    assert_eq!(run.code, 2, "--reason is required: {run:?}");
    assert!(run.stderr.contains("--reason"));
}

#[test]
fn core_url_flag_wins_over_the_environment() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    core.register("user-management");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let run = Run::of(core.cli(dir.path()).env("VIVIFIED_CORE_URL", &dead).args([
        "plugins",
        "--core-url",
        &core.url(),
        "list",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("user-management"));

    // The flag also works after the subcommand (a global option).
    let run = Run::of(core.cli(dir.path()).env("VIVIFIED_CORE_URL", &dead).args([
        "plugins",
        "show",
        "user-management",
        "--core-url",
        &core.url(),
    ]));
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn an_unreachable_core_is_one_line_and_exit_1() {
    let dir = TempDir::new("cli");
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN)
            .args(["plugins", "list", "--core-url", &url]),
    );
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line(
        "vivified",
        &format!("cannot reach the core at {url}/plugins"),
    );
    assert_no_token(&run);
}

#[test]
fn disable_and_enable_change_the_record_and_are_idempotent() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let token = core.register("user-management");
    let heartbeat = || {
        core.request(
            reqwest::Method::POST,
            "/plugins/user-management/heartbeat",
            Some(&token),
            None,
        )
    };

    for _ in 0..2 {
        let run = Run::of(core.cli(dir.path()).args([
            "plugins",
            "disable",
            "user-management",
            "--reason",
            "maintenance window",
        ]));
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(
            run.stdout,
            "disabled user-management (maintenance window)\n"
        );
        assert_no_token(&run);
    }
    let (_, record) = core.record("user-management");
    assert_eq!(record["enabled"], false);
    assert_eq!(record["disabled_reason"], "maintenance window");
    let (status, body) = heartbeat();
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("plugin_disabled"))
    );

    let run = Run::of(core.cli(dir.path()).args(["plugins", "list"]));
    let row: Vec<&str> = run
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[0], "user-management");
    assert_eq!(row[4], "no", "ENABLED column: {}", run.stdout);
    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "show", "user-management"]),
    );
    assert!(
        run.stdout
            .contains("disabled_reason      maintenance window\n"),
        "{}",
        run.stdout
    );

    for _ in 0..2 {
        let run = Run::of(
            core.cli(dir.path())
                .args(["plugins", "enable", "user-management"]),
        );
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout, "enabled user-management\n");
    }
    let (_, record) = core.record("user-management");
    assert_eq!(record["enabled"], true);
    assert_eq!(record["disabled_reason"], Value::Null);
    assert_eq!(heartbeat().0, 200, "heartbeats are accepted again");
}

#[test]
fn disable_and_enable_json_are_the_cores_records() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    core.register("user-management");
    let run = Run::of(core.cli(dir.path()).args([
        "plugins",
        "disable",
        "user-management",
        "--reason",
        "audit",
        "--json",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown, core.record("user-management").1);
    assert_eq!(shown["enabled"], false);

    let run =
        Run::of(
            core.cli(dir.path())
                .args(["plugins", "enable", "user-management", "--json"]),
        );
    assert_eq!(run.code, 0, "{run:?}");
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown, core.record("user-management").1);
    assert_eq!(shown["enabled"], true);
}

#[test]
fn disable_and_enable_refusals_are_the_cores() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    for args in [
        &["plugins", "disable", "nobody", "--reason", "x"][..],
        &["plugins", "enable", "nobody"],
    ] {
        let run = Run::of(core.cli(dir.path()).args(args));
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        run.assert_one_error_line("vivified", "the core answered 404 not_found");
    }
    core.register("user-management");
    let run = Run::of(core.cli(dir.path()).args([
        "plugins",
        "disable",
        "user-management",
        "--reason",
        "  ",
    ]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "the core answered 400 invalid_body");
    assert_eq!(core.record("user-management").1["enabled"], true);
}

#[test]
fn revoke_before_locks_out_one_plugin_or_all_of_them() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let one = core.register("user-management");
    let two = core.register("billing");
    let heartbeat = |id: &str, token: &str| {
        core.request(
            reqwest::Method::POST,
            &format!("/plugins/{id}/heartbeat"),
            Some(token),
            None,
        )
        .0
    };

    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "revoke-before", "user-management"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("revoked the token of user-management issued at or before 20"),
        "{run:?}"
    );
    assert_no_token(&run);
    assert_eq!(heartbeat("user-management", &one), 401);
    assert_eq!(heartbeat("billing", &two), 200);

    // An instant before both registrations revokes nothing.
    let run = Run::of(core.cli(dir.path()).args([
        "plugins",
        "revoke-before",
        "--all",
        "--at",
        "2020-01-01T00:00:00Z",
        "--json",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["revoked"], 0, "{v}");
    assert_eq!(v["before"], "2020-01-01T00:00:00Z");

    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "revoke-before", "--all"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("revoked the tokens of 1 plugin issued at or before"),
        "{run:?}"
    );
    assert_eq!(heartbeat("billing", &two), 401);

    // The core's refusal of a bad instant is one line; naming nobody is a usage error.
    let run = Run::of(core.cli(dir.path()).args([
        "plugins",
        "revoke-before",
        "--all",
        "--at",
        "tomorrow",
    ]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("400 invalid_body"), "{run:?}");
    let run = Run::of(core.cli(dir.path()).args(["plugins", "revoke-before"]));
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn enroll_prints_a_one_time_token_that_registers_its_id_once() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let run = Run::of(
        core.cli(dir.path())
            .args(["enroll", "billing", "--ttl", "2h"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_token(&run);
    let token = run.stdout.trim_end().to_owned();
    assert_eq!(
        run.stdout,
        format!("{token}\n"),
        "the token alone on stdout"
    );
    assert!(token.starts_with("venr_"), "{token}");
    assert!(
        run.stderr.contains("for billing: registers once, until 20"),
        "{run:?}"
    );
    let mut manifest: Value = serde_json::from_slice(
        &std::fs::read(crate::common::repo("schemas/examples/user-management.json")).unwrap(),
    )
    .unwrap();
    manifest["id"] = serde_json::json!("billing");
    let register = |bearer: &str| {
        core.request(
            reqwest::Method::POST,
            "/plugins/register",
            Some(bearer),
            Some(manifest.clone()),
        )
    };
    assert_eq!(register(&token).0, 200);
    let (status, body) = register(&token);
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "enrollment_used");

    let run = Run::of(core.cli(dir.path()).args(["enroll", "other", "--json"]));
    assert_eq!(run.code, 0, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["plugin_id"], "other");
    assert!(v["enrollment_id"].is_string() && v["expires_at"].is_string());

    let run = Run::of(
        core.cli(dir.path())
            .args(["enroll", "billing", "--ttl", "30d"]),
    );
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "400 invalid_body");
    let run = Run::of(core.cli(dir.path()).args(["enroll", "../admin"]));
    assert_ne!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "");
}

#[test]
fn enrollments_are_listed_and_an_unused_one_cancelled() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let mint = |id: &str| {
        let run = Run::of(core.cli(dir.path()).args(["enroll", id, "--json"]));
        assert_eq!(run.code, 0, "{run:?}");
        serde_json::from_str::<Value>(&run.stdout).unwrap()
    };
    let ledger = mint("ledger");
    let billing = mint("billing");
    let id = |v: &Value| v["enrollment_id"].as_str().unwrap().to_owned();

    let run = Run::of(core.cli(dir.path()).args(["enrollments", "list"]));
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(lines.iter().all(|l| l.contains("  pending  ")), "{run:?}");
    for v in [&ledger, &billing] {
        assert!(run.stdout.contains(&id(v)), "{run:?}");
        assert!(!run.stdout.contains(v["token"].as_str().unwrap()));
    }
    let run =
        Run::of(
            core.cli(dir.path())
                .args(["enrollments", "list", "--plugin", "ledger", "--json"]),
        );
    let listed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["enrollment_id"], id(&ledger).as_str());

    let run = Run::of(
        core.cli(dir.path())
            .args(["enrollments", "cancel", &id(&ledger)]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("enrollment {} for ledger cancelled\n", id(&ledger))
    );
    let run = Run::of(
        core.cli(dir.path())
            .args(["enrollments", "cancel", &id(&ledger)]),
    );
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "404 not_found");
    let run = Run::of(core.cli(dir.path()).args(["enrollments", "list"]));
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
}

#[test]
fn approve_answers_the_record_and_show_tells_the_approval() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    core.register("user-management");
    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "approve", "user-management"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "approved user-management (handles_pii, audit_required)\n"
    );
    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "show", "user-management"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["approval", "approved"]),
        "{}",
        run.stdout
    );
    let run = Run::of(core.cli(dir.path()).args(["plugins", "approve", "nobody"]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "404 not_found");
    // Dev mode approved it at registration: there is nothing to refuse.
    let run = Run::of(core.cli(dir.path()).args([
        "plugins",
        "refuse",
        "user-management",
        "--reason",
        "no BAA",
    ]));
    assert_eq!(run.code, 1, "{run:?}");
    run.assert_one_error_line("vivified", "409 conflict");
    let run = Run::of(
        core.cli(dir.path())
            .args(["plugins", "refuse", "user-management"]),
    );
    assert_eq!(run.code, 2, "--reason is required: {run:?}");
}
