//! The checked-in Rust of `canonical_models.proto` is what protox and prost-build make
//! of it today: this test regenerates it in memory and fails if
//! `src/generated/vivified.canonical.v1.rs` differs. With `VIVIFIED_REGENERATE_PROTO=1`
//! it rewrites that file instead (`make proto`).
//!
//! The comparison is byte for byte against prost-build's output, formatted by its
//! `format` feature (prettyplease, pinned by Cargo.lock), not by rustfmt: lib.rs pulls
//! the file in with `include!`, which rustfmt does not follow, so `cargo fmt` never
//! rewrites it behind this test's back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The package of `canonical_models.proto`; prost-build names the file after it.
const PACKAGE: &str = "vivified.canonical.v1";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The prost-build configuration the checked-in code was made with. Change it here
/// (and regenerate), never by editing the generated file.
fn config() -> prost_build::Config {
    let mut config = prost_build::Config::new();
    config
        // Maps encode in key order, so one event always encodes to the same bytes.
        .btree_map(["."])
        // `prost::Name` for every message: full names and type URLs for `Any`.
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");
    config
}

/// Every generated module's Rust, keyed by its protobuf package.
fn generate(dir: &Path) -> BTreeMap<String, String> {
    let fds = match protox::compile(["canonical_models.proto"], [dir]) {
        Ok(fds) => fds,
        Err(err) => panic!("protox cannot compile {}: {err:?}", dir.display()),
    };
    let requests = fds
        .file
        .into_iter()
        .map(|file| {
            (
                prost_build::Module::from_protobuf_package_name(file.package()),
                file,
            )
        })
        .collect();
    match config().generate(requests) {
        Ok(modules) => modules
            .into_iter()
            .map(|(module, code)| (module.parts().collect::<Vec<_>>().join("."), code))
            .collect(),
        Err(err) => panic!("prost-build cannot generate Rust for canonical_models.proto: {err}"),
    }
}

#[test]
fn checked_in_code_matches_canonical_models_proto() {
    let dir = crate_dir();
    let mut modules = generate(&dir);
    let Some(fresh) = modules.remove(PACKAGE) else {
        panic!(
            "canonical_models.proto generated no package {PACKAGE} (got {:?}); if the package was renamed, rename src/generated/ and lib.rs too",
            modules.keys().collect::<Vec<_>>()
        );
    };
    let path = dir.join("src/generated").join(format!("{PACKAGE}.rs"));
    let regenerate = std::env::var_os("VIVIFIED_REGENERATE_PROTO").is_some_and(|v| v == "1");
    if regenerate {
        if let Err(err) = std::fs::write(&path, &fresh) {
            panic!("cannot write {}: {err}", path.display());
        }
        eprintln!("regenerated {}", path.display());
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != fresh {
        let first_difference = checked_in
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || checked_in.lines().count().min(fresh.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} is stale: it differs from what canonical_models.proto generates (first at line {first_difference}). \
             Regenerate it with `make proto` (VIVIFIED_REGENERATE_PROTO=1 cargo test -p vivified-proto --test generated_code) and commit the result.",
            path.display()
        );
    }
}
