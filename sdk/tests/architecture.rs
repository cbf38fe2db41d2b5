//! Architecture Invariant: `vivified-plugin-sdk` is light enough for any plugin — no
//! sqlx, no axum (nor any HTTP server framework), no TLS stack but rustls with ring (no
//! OpenSSL, no native-tls, no aws-lc and its C build), no anyhow, and none of the core's
//! crates — checked against the real dependency graph (`cargo tree`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const BANNED: &[&str] = &[
    "sqlx",
    "sqlx-core",
    "axum",
    "axum-core",
    "anyhow",
    "aws-lc-rs",
    "aws-lc-sys",
    "native-tls",
    "openssl",
    "openssl-sys",
    "jsonwebtoken",
    "vivified-server",
    "vivified-adapters",
    "vivified-domain",
    "vivified-ports",
];

/// The lines `cargo tree` prints for `args`.
fn tree_lines(args: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sdk/ lives in the workspace root");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["tree", "--offline", "--prefix", "none"])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty(), "cargo tree {args:?} listed nothing");
    lines
}

/// The crate names `cargo tree` lists for `args` (each once).
fn tree(args: &[&str]) -> BTreeSet<String> {
    tree_lines(args)
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn sdk_reaches_no_sqlx_axum_tls_or_core_crate() {
    for extra in [&[][..], &["--all-features"][..]] {
        let mut args = vec!["-p", "vivified-plugin-sdk", "-e", "normal,build"];
        args.extend_from_slice(extra);
        let deps = tree(&args);
        assert!(deps.contains("vivified-plugin-sdk"), "{deps:?}");
        assert!(deps.contains("reqwest"), "{deps:?}");
        let found: Vec<&str> = BANNED
            .iter()
            .copied()
            .filter(|b| deps.contains(*b))
            .collect();
        assert!(
            found.is_empty(),
            "Architecture Invariant broken: vivified-plugin-sdk depends on {found:?}"
        );
    }
}

#[test]
fn reqwest_is_built_without_a_server_or_tls() {
    // hyper is there as a client; its server feature must not be switched on by the SDK.
    let lines = tree_lines(&[
        "-p",
        "vivified-plugin-sdk",
        "-e",
        "features,normal",
        "-i",
        "hyper",
    ]);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hyper feature \"client\"")),
        "{lines:?}"
    );
    let server: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.starts_with("hyper feature \"server\"")
                || l.starts_with("hyper-util feature \"server")
        })
        .collect();
    assert!(
        server.is_empty(),
        "hyper's server feature is on: {server:?}"
    );
}
