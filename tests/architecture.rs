//! Architecture invariants, checked against the real dependency graph (`cargo tree`):
//!
//! - `vivified-domain` knows nothing about HTTP, SQL, NATS, JWT libraries or tokio.
//! - `vivified-ports` depends on serde, serde_json, async-trait, thiserror and time only.
//! - `vivified-adapters` implements ports and never depends on the domain.
//! - Every crate takes the workspace's lints, which forbid `unsafe`; none overrides it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates the domain must never reach, directly or transitively.
const BANNED_IN_DOMAIN: &[&str] = &[
    "axum",
    "hyper",
    "sqlx",
    "sqlx-core",
    "async-nats",
    "jsonwebtoken",
    "tokio",
    "tokio-postgres",
    "reqwest",
    "tower",
];

/// The only direct (normal) dependencies `vivified-ports` may have without features.
/// `hmac` and `sha2` are for the audit chain's hash, which adapters (the sealer) and
/// the verifier share without depending on the domain.
const PORTS_ALLOWED_DIRECT: &[&str] = &[
    "serde",
    "serde_json",
    "async-trait",
    "thiserror",
    "time",
    "hmac",
    "sha2",
];

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
}

/// Runs `cargo tree` with `args` (offline: the lock file already pins everything) and
/// returns the crate names it lists (each once, the package itself included).
fn tree(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["tree", "--offline", "--prefix", "none"])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: BTreeSet<String> = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(!names.is_empty(), "cargo tree {args:?} listed nothing");
    names
}

#[test]
fn domain_reaches_no_http_sql_nats_jwt_or_tokio() {
    let deps = tree(&["-p", "vivified-domain", "-e", "normal"]);
    assert!(deps.contains("vivified-domain"), "{deps:?}");
    assert!(deps.contains("vivified-ports"), "{deps:?}");
    let found: Vec<&str> = BANNED_IN_DOMAIN
        .iter()
        .copied()
        .filter(|b| deps.contains(*b))
        .collect();
    assert!(
        found.is_empty(),
        "Architecture Invariant broken: vivified-domain depends on {found:?}"
    );
    for adapter_or_app in ["vivified-adapters", "vivified-server"] {
        assert!(
            !deps.contains(adapter_or_app),
            "vivified-domain depends on {adapter_or_app}"
        );
    }
}

#[test]
fn ports_depend_on_the_allow_list_only() {
    let direct = tree(&["-p", "vivified-ports", "-e", "normal", "--depth", "1"]);
    let extra: Vec<&String> = direct
        .iter()
        .filter(|d| d.as_str() != "vivified-ports" && !PORTS_ALLOWED_DIRECT.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "Architecture Invariant broken: vivified-ports depends directly on {extra:?}; allowed: {PORTS_ALLOWED_DIRECT:?}"
    );
    // Transitively, the allow-list's own dependencies only: nothing banned from the
    // domain, and no other workspace crate.
    let all = tree(&["-p", "vivified-ports", "-e", "normal"]);
    let found: Vec<&str> = BANNED_IN_DOMAIN
        .iter()
        .copied()
        .filter(|b| all.contains(*b))
        .collect();
    assert!(found.is_empty(), "vivified-ports reaches {found:?}");
    let own: Vec<&String> = all
        .iter()
        .filter(|d| d.starts_with("vivified-") && d.as_str() != "vivified-ports")
        .collect();
    assert!(own.is_empty(), "vivified-ports depends on {own:?}");
}

#[test]
fn adapters_never_depend_on_the_domain() {
    for features in [
        &["--all-features"][..],
        &["--no-default-features"][..],
        &[][..],
    ] {
        let mut args = vec!["-p", "vivified-adapters", "-e", "normal,build"];
        args.extend_from_slice(features);
        let deps = tree(&args);
        assert!(deps.contains("vivified-ports"), "{deps:?}");
        for forbidden in ["vivified-domain", "vivified-server"] {
            assert!(
                !deps.contains(forbidden),
                "Architecture Invariant broken: vivified-adapters ({features:?}) depends on {forbidden}"
            );
        }
    }
}

#[test]
fn the_tree_check_sees_what_it_looks_for() {
    // Guards the checks above against a parse that silently finds nothing: the server
    // does depend on these.
    let server = tree(&["-p", "vivified-server", "-e", "normal"]);
    for expected in [
        "axum",
        "hyper",
        "tokio",
        "tower",
        "jsonwebtoken",
        "vivified-domain",
    ] {
        assert!(
            server.contains(expected),
            "{expected} not seen in {server:?}"
        );
    }
}

/// The workspace's members, from `cargo metadata` (offline), as (name, manifest path).
fn members() -> Vec<(String, std::path::PathBuf)> {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["manifest_path"].as_str().expect("path").into(),
            )
        })
        .collect()
}

#[test]
fn no_crate_may_hold_unsafe_code() {
    let root = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("read");
    assert!(
        root.contains("[workspace.lints.rust]\nunsafe_code = \"forbid\""),
        "the workspace lints forbid unsafe code"
    );
    let members = members();
    assert!(members.len() >= 9, "{members:?}");
    for (name, manifest) in members {
        let text = std::fs::read_to_string(&manifest).expect("read");
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{name} takes the workspace lints ({})",
            manifest.display()
        );
        assert!(
            !text.contains("unsafe_code"),
            "{name} sets its own unsafe_code lint ({})",
            manifest.display()
        );
    }
}
