//! `vivified audit verify|tail` against a real core started in-process.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use vivified_domain::audit_chain::{ChainHash, ChainHead, ChainKey, Checkpoint};

use crate::common::{ADMIN_TOKEN, AUDIT_KEY, Core, Run, TempDir, free_port, vivified};

fn key() -> ChainKey {
    ChainKey::new(AUDIT_KEY.as_bytes()).expect("a long enough key")
}

/// No run may ever show the admin token or the audit key.
fn assert_no_secret(run: &Run) {
    for secret in [ADMIN_TOKEN, AUDIT_KEY] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a secret leaked: {run:?}"
        );
    }
}

/// The newest sealed entry, through the API.
fn newest(core: &Core) -> Value {
    let (status, body) = core.request(
        reqwest::Method::GET,
        "/audit?order=newest&limit=1",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["entries"][0].clone()
}

#[test]
fn verify_says_intact_up_to_the_head() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    for id in ["a-one", "a-two", "a-three"] {
        core.register(id);
    }
    // core.start and three registrations.
    assert_eq!(core.sealed(), 4);
    let run = Run::of(core.cli(dir.path()).args(["audit", "verify"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "intact up to seq 4\n");
    assert_eq!(run.stderr, "");
    assert_no_secret(&run);

    // With a checkpoint of the head, as the core logs it.
    let head = newest(&core);
    let cp = Checkpoint::new(
        &key(),
        ChainHead {
            seq: head["seq"].as_u64().unwrap(),
            hash: head["hash"].as_str().unwrap().parse().unwrap(),
        },
    );
    let run =
        Run::of(
            core.cli(dir.path())
                .args(["audit", "verify", "--checkpoint", &cp.to_string()]),
        );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "intact up to seq 4\n");

    let run = Run::of(core.cli(dir.path()).args(["audit", "verify", "--json"]));
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["intact"], true);
    assert_eq!(report["verified_up_to"], 4);
    assert_eq!(report["complete"], true);
}

/// A checkpoint beyond what the chain holds: entries were cut from its end.
#[test]
fn verify_exits_1_with_the_first_bad_seq() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    core.register("cut-one");
    assert_eq!(core.sealed(), 2);
    let cp = Checkpoint::new(
        &key(),
        ChainHead {
            seq: 9,
            hash: ChainHash::GENESIS,
        },
    );
    let run =
        Run::of(
            core.cli(dir.path())
                .args(["audit", "verify", "--checkpoint", &cp.to_string()]),
        );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "first bad seq 3: chain_truncated\n");
    assert_eq!(run.stderr, "");
    let run = Run::of(core.cli(dir.path()).args([
        "audit",
        "verify",
        "--json",
        "--checkpoint",
        &cp.to_string(),
    ]));
    assert_eq!(run.code, 1, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["first_bad_seq"], 3);
    assert_eq!(report["reason"], "chain_truncated");
}

#[test]
fn verify_exits_2_when_it_cannot_tell() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    // Not a checkpoint: refused before asking.
    let run = Run::of(
        core.cli(dir.path())
            .args(["audit", "verify", "--checkpoint", "1:2:3"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "--checkpoint");
    // A checkpoint made with another key: the core refuses it.
    let other = ChainKey::new(&[7u8; 32]).unwrap();
    let foreign = Checkpoint::new(
        &other,
        ChainHead {
            seq: 1,
            hash: ChainHash::GENESIS,
        },
    );
    let run = Run::of(core.cli(dir.path()).args([
        "audit",
        "verify",
        "--checkpoint",
        &foreign.to_string(),
    ]));
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "400 invalid_body");
    // No admin token; a plugin's token; no core.
    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_CORE_URL", core.url())
            .args(["audit", "verify"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "nor VIVIFIED_ADMIN_TOKEN is set");
    let token = core.register("not-an-admin");
    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_CORE_URL", core.url())
            .env("VIVIFIED_ADMIN_TOKEN", &token)
            .args(["audit", "verify"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "403 forbidden (admin_token_required)");
    let run = Run::of(
        vivified(dir.path())
            .env("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN)
            .args([
                "audit",
                "verify",
                "--core-url",
                &format!("http://127.0.0.1:{}", free_port()),
            ]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "cannot reach the core");
}

#[test]
fn tail_prints_the_newest_entries_oldest_first() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    for i in 0..5 {
        core.register(&format!("t-{i}"));
    }
    assert_eq!(core.sealed(), 6);
    let run = Run::of(core.cli(dir.path()).args(["audit", "tail", "-n", "3"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_secret(&run);
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(lines[0][0], "4");
    assert_eq!(lines[2][0], "6");
    assert_eq!(
        &lines[2][2..],
        [
            "plugin:t-4",
            "plugin.register",
            "t-4",
            "success",
            "registered"
        ]
    );
    assert!(lines[2][1].ends_with('Z'), "{}", lines[2][1]);

    // The default is 20: everything here, the core's start first.
    let run = Run::of(core.cli(dir.path()).args(["audit", "tail"]));
    assert_eq!(run.stdout.lines().count(), 6, "{}", run.stdout);
    assert!(run.stdout.starts_with("1  "), "{}", run.stdout);
    assert!(
        run.stdout
            .lines()
            .next()
            .unwrap()
            .contains("system  core.start")
    );

    // JSON lines, filtered.
    let run = Run::of(core.cli(dir.path()).args([
        "audit",
        "tail",
        "--json",
        "-n",
        "2",
        "--action",
        "plugin.register",
        "--outcome",
        "success",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    let entries: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 6]);
    assert!(
        entries
            .iter()
            .all(|e| e["hash"].as_str().unwrap().len() == 64)
    );

    let run = Run::of(
        core.cli(dir.path())
            .args(["audit", "tail", "--outcome", "maybe"]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    let run = Run::of(core.cli(dir.path()).args(["audit", "tail", "-n", "1001"]));
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn tail_follow_prints_entries_as_they_are_sealed() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    core.register("f-0");
    core.sealed();
    let mut child = core
        .cli(dir.path())
        .args([
            "audit",
            "tail",
            "--json",
            "-n",
            "1",
            "--follow",
            "--interval",
            "50ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vivified audit tail --follow");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> Value {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line for {what}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let first = next("the newest entry");
    assert_eq!(first["target"], "f-0");
    core.register("f-1");
    core.register("f-2");
    assert_eq!(next("f-1")["target"], "f-1");
    assert_eq!(next("f-2")["target"], "f-2");
    child.kill().expect("stop the follower");
    let _ = child.wait();
    let _ = reader.join();
}

/// A chain sealed with one key, then (after a restart) rotated to another: `audit
/// verify` walks across the rotation and says where each key took over, and so does
/// `audit verify --export` offline with both keys; with the old key alone the export
/// verifies up to the rotation.
#[test]
fn verify_walks_across_a_key_rotation_online_and_offline() {
    const NEXT: &str = "cli-next-audit-key-Hy7Gt6Fr5De4Sw3Aq2Zx1";
    let dir = TempDir::new("cli-rotate");
    let store = format!("sqlite://{}", dir.path().join("core.db").display());
    let old = Core::start_with(&[("VIVIFIED_STORE", &store)]);
    old.register("r-one");
    assert_eq!(old.sealed(), 2);
    drop(old);
    let core = Core::start_with(&[
        ("VIVIFIED_STORE", &store),
        ("VIVIFIED_AUDIT_KEY", NEXT),
        ("VIVIFIED_AUDIT_PREVIOUS_KEYS", AUDIT_KEY),
    ]);
    core.register("r-two");
    let head = core.sealed();
    let fp = |k: &str| ChainKey::new(k.as_bytes()).unwrap().fingerprint();
    let rotations: Vec<u64> = core
        .text("/audit/export")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "audit.key_rotated")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let [rotation] = rotations[..] else {
        panic!("one rotation: {rotations:?}");
    };
    let expected = format!(
        "intact up to seq {head} (key {} from seq 1, key {} from seq {})\n",
        fp(AUDIT_KEY),
        fp(NEXT),
        rotation + 1
    );
    let run = Run::of(core.cli(dir.path()).args(["audit", "verify"]));
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, expected.as_str()),
        "{run:?}"
    );

    let export = dir.path().join("export.ndjson");
    std::fs::write(&export, core.text("/audit/export")).unwrap();
    let offline = |keys: &[(&str, &str)]| {
        let mut cmd = vivified(dir.path());
        cmd.args(["audit", "verify", "--export"]).arg(&export);
        for (k, v) in keys {
            cmd.env(k, v);
        }
        Run::of(&mut cmd)
    };
    let run = offline(&[
        ("VIVIFIED_AUDIT_KEY", NEXT),
        ("VIVIFIED_AUDIT_PREVIOUS_KEYS", AUDIT_KEY),
    ]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, expected.as_str()),
        "{run:?}"
    );
    for secret in [NEXT, AUDIT_KEY] {
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    }
    let run = offline(&[("VIVIFIED_AUDIT_KEY", AUDIT_KEY)]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (
            1,
            format!("first bad seq {}: unknown_key\n", rotation + 1).as_str()
        ),
        "{run:?}"
    );
    let run = offline(&[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("VIVIFIED_AUDIT_KEY"), "{run:?}");
}
