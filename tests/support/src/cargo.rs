//! The workspace's real dependency graph, as `cargo tree` prints it (offline: the lock
//! file pins everything), for the architecture tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The lines `cargo tree --prefix none` prints for `args`.
///
/// # Panics
/// If cargo fails or lists nothing.
pub fn tree_lines(args: &[&str]) -> Vec<String> {
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
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty(), "cargo tree {args:?} listed nothing");
    lines
}

/// The crate names `cargo tree` lists for `args` (each once, the package itself
/// included).
pub fn tree(args: &[&str]) -> BTreeSet<String> {
    tree_lines(args)
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}
