//! Architecture Invariant: `vivified-plugin-sdk` is light enough for any plugin — no
//! sqlx, no axum (nor any HTTP server framework), no TLS stack but rustls with ring (no
//! OpenSSL, no native-tls, no aws-lc and its C build), no anyhow, and none of the core's
//! crates — checked against the real dependency graph (`cargo tree`).

use vivified_test_support::cargo::{tree, tree_lines};

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
