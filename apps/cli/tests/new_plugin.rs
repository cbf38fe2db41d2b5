//! `vivified new-plugin`: the real binary writes a plugin crate; the crate builds
//! offline against this workspace's SDK, its own test passes, its manifest passes
//! `vivified validate`, and its binary registers with a real core (`vivified serve`)
//! and heartbeats. Bad names and occupied directories write nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vivified_test_support::fs::TempDir;
use vivified_test_support::net::free_port;
use vivified_test_support::process::{Guarded, Ran, isolated};

const ADMIN_TOKEN: &str = "adm-new-plugin-test-Hq4Wz8Rt2Yx6";

/// A path under the repository root.
fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The workspace's target directory: `vivified` is `<target>/<profile>/vivified`.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_vivified"))
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in <target>/<profile>/")
        .to_path_buf()
}

/// The profile folder the binaries are in (`<target>/debug`).
fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_vivified"))
        .parent()
        .expect("the binary lies in a folder")
        .to_path_buf()
}

/// `vivified` with an empty environment (plus `PATH`), stdin closed, run in `dir`.
fn vivified(dir: &Path) -> Command {
    isolated(env!("CARGO_BIN_EXE_vivified"), dir)
}

/// A finished run: exit code, stdout and stderr as text.
type Run = Ran;

/// Exit 2, exactly one `vivified: …` line on stderr containing `needle`, nothing on
/// stdout.
fn assert_refused(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", needle);
    assert!(run.stdout.is_empty(), "nothing on stdout: {run:?}");
}

/// The last `n` characters of `s` (a failed build's output is long).
fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    &s[start..]
}

/// `cargo <args>` in `dir` on the workspace's target directory, offline, killed after
/// `timeout`. The same cargo that runs this test, with its environment (its registry
/// cache is where the workspace's dependencies were downloaded to).
fn cargo(dir: &Path, args: &[&str], timeout: Duration) -> Run {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo");
    let stdout = collect(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cargo {args:?} did not finish within {timeout:?}:\n{}",
                tail(&text(&stderr), 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The readers end with the pipes.
    std::thread::sleep(Duration::from_millis(50));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

type Captured = Arc<Mutex<Vec<u8>>>;

/// Reads `pipe` to its end on a thread of its own.
fn collect(mut pipe: impl Read + Send + 'static) -> Captured {
    let sink: Captured = Arc::default();
    let out = sink.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
    sink
}

fn text(c: &Captured) -> String {
    String::from_utf8_lossy(&c.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// The tail of what `p` wrote, for a failure message.
fn output(p: &Guarded) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        tail(&p.stdout(), 4000),
        tail(&p.stderr(), 4000)
    )
}

/// `vivified serve` in dev mode on the memory store with a known admin token and
/// quick heartbeats, on a free port; waits until `vivified healthcheck` passes. A start
/// that lost the race for its port is retried on another.
fn start_core(dir: &Path) -> (Guarded, String) {
    for _ in 0..3 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut core = Guarded::spawn(
            vivified(dir)
                .env("VIVIFIED_STORE", "memory")
                .env("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("VIVIFIED_HEARTBEAT_INTERVAL", "250ms")
                .args(["serve", "--bind", &format!("127.0.0.1:{port}")]),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Run::of(vivified(dir).args(["healthcheck", "--url", &url])).code == 0 {
                return (core, url);
            }
            if core.exited() {
                assert!(
                    core.stderr().contains("cannot listen"),
                    "the core exited:\n{}",
                    output(&core)
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the core did not come up:\n{}",
                output(&core)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("no free port after three attempts");
}

/// The records of `GET /plugins` (every page, admin token), as `vivified plugins list
/// --json` gets them.
fn plugins(dir: &Path, url: &str) -> Vec<Value> {
    let run = Run::of(
        vivified(dir)
            .env("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN)
            .args(["plugins", "--json", "--core-url", url, "list"]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let records: Value = serde_json::from_str(&run.stdout).expect("a JSON list");
    records.as_array().cloned().expect("an array of records")
}

/// The whole promise: generate, build offline against this workspace's SDK, run the
/// generated test, validate the manifest, then run the plugin's binary against a real
/// core until it is registered, active and healthy.
#[test]
fn a_generated_plugin_builds_offline_passes_its_test_and_registers_with_a_core() {
    let tmp = TempDir::new("build");
    let crate_dir = tmp.join("hello-world");
    let sdk = repo("sdk");
    let run = Run::of(vivified(tmp.path()).args([
        "new-plugin",
        "hello-world",
        "--dir",
        crate_dir.to_str().expect("a UTF-8 temp path"),
        "--sdk-path",
        sdk.to_str().expect("a UTF-8 repository path"),
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("created plugin hello-world (crate hello-world-plugin)"),
        "{run:?}"
    );
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "manifest.json",
        "src/lib.rs",
        "src/main.rs",
        "tests/plugin.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} was written");
    }
    assert_eq!(tmp.entries(), ["hello-world"], "no staging folder is left");
    let cargo_toml = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let sdk_abs = std::fs::canonicalize(&sdk).unwrap();
    assert!(
        cargo_toml.contains(&format!(
            "vivified-plugin-sdk = {{ path = \"{}\" }}",
            sdk_abs.display()
        )),
        "{cargo_toml}"
    );
    assert!(cargo_toml.contains("\n[workspace]\n"), "{cargo_toml}");

    // The manifest the plugin compiles in passes the core's validator.
    let run = Run::of(vivified(&crate_dir).args(["validate", "manifest.json"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "manifest.json: valid (hello-world 0.1.0)\n");

    // The generated code is rustfmt-clean.
    let rs = ["src/lib.rs", "src/main.rs", "tests/plugin.rs"];
    let run = Run::of(
        Command::new("rustfmt")
            .args(["--check", "--edition", "2024"])
            .args(rs)
            .current_dir(&crate_dir),
    );
    assert_eq!(run.code, 0, "generated code is not rustfmt-clean: {run:?}");

    // Offline, on the workspace's target directory: the crates come from the local
    // registry cache and the copied Cargo.lock pins the versions the workspace uses
    // (without it, an offline resolution may pick other cached versions, or fail). Its
    // dev profile is the workspace's, so the registry dependencies already compiled
    // for the workspace are reused when their features agree; the SDK, the test kit
    // and the core's crates are compiled once more for it (as dependencies of another
    // workspace they get the dependencies' `opt-level = 1`, so their artifacts do not
    // overwrite the workspace's own).
    let build_timeout = Duration::from_secs(40 * 60);
    let run = cargo(&crate_dir, &["build"], build_timeout);
    assert_eq!(
        run.code,
        0,
        "cargo build failed:\n{}",
        tail(&run.stderr, 6000)
    );
    assert!(
        !run.stderr.contains("Downloading") && !run.stderr.contains("Updating"),
        "nothing is fetched: {}",
        tail(&run.stderr, 4000)
    );
    let run = cargo(&crate_dir, &["test"], build_timeout);
    assert_eq!(
        run.code,
        0,
        "the generated test failed:\n{}\n{}",
        tail(&run.stdout, 4000),
        tail(&run.stderr, 4000)
    );
    assert!(
        run.stdout
            .contains("test registers_heartbeats_and_handles_events ... ok"),
        "{}",
        run.stdout
    );

    // The binary, against a real core in another process.
    let core_dir = TempDir::new("core");
    let (mut core, url) = start_core(core_dir.path());
    let mut plugin = Guarded::spawn(
        Command::new(profile_dir().join("hello-world-plugin"))
            .env_clear()
            .env("CORE_URL", &url)
            .current_dir(core_dir.path()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let records = plugins(core_dir.path(), &url);
        if let Some(r) = records.iter().find(|r| {
            r["plugin_id"] == "hello-world" && r["status"] == "active" && r["health"] == "healthy"
        }) {
            break r.clone();
        }
        assert!(!plugin.exited(), "the plugin exited:\n{}", output(&plugin));
        assert!(
            Instant::now() < deadline,
            "the plugin did not become active and healthy: {records:?}\n{}",
            output(&plugin)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(record["manifest"]["name"], "Hello world");
    assert!(record["last_heartbeat"].is_string(), "{record}");
    // The plugin logs JSON lines on stdout.
    let logs = plugin.stdout();
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{logs}"
    );

    assert_eq!(
        plugin.terminate(Duration::from_secs(30)),
        Some(0),
        "a clean stop on SIGTERM:\n{}",
        output(&plugin)
    );
    assert_eq!(core.terminate(Duration::from_secs(30)), Some(0));
}

/// Without `--sdk-path` the crate depends on the project's git repository, and no
/// Cargo.lock is written (the first build resolves one).
#[test]
fn the_default_source_is_the_projects_git_repository() {
    let tmp = TempDir::new("git");
    let run = Run::of(vivified(tmp.path()).args(["new-plugin", "billing"]));
    assert_eq!(run.code, 0, "{run:?}");
    let dir = tmp.join("billing");
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains("name = \"billing-plugin\""),
        "{cargo_toml}"
    );
    for dep in ["vivified-plugin-sdk", "vivified-testkit"] {
        assert!(
            cargo_toml.contains(&format!(
                "{dep} = {{ git = \"https://github.com/vivified/vivified\", rev = \"v{}\" }}",
                env!("CARGO_PKG_VERSION")
            )),
            "{cargo_toml}"
        );
    }
    assert!(!dir.join("Cargo.lock").exists());
    let run = Run::of(vivified(&dir).args(["validate", "manifest.json"]));
    assert_eq!(run.code, 0, "{run:?}");

    // A pinned revision of another repository.
    let run = Run::of(vivified(tmp.path()).args([
        "new-plugin",
        "pinned",
        "--sdk-git",
        "https://git.example.com/vivified.git",
        "--sdk-rev",
        "0123abc",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    let cargo_toml = std::fs::read_to_string(tmp.join("pinned/Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains(
            "vivified-plugin-sdk = { git = \"https://git.example.com/vivified.git\", rev = \"0123abc\" }"
        ),
        "{cargo_toml}"
    );
}

/// An empty directory is filled; the name's derived names follow the id.
#[test]
fn an_existing_empty_directory_is_used() {
    let tmp = TempDir::new("empty");
    let dir = tmp.join("target-here");
    std::fs::create_dir(&dir).unwrap();
    let run =
        Run::of(vivified(tmp.path()).args(["new-plugin", "3d-scans", "--dir", "target-here"]));
    assert_eq!(run.code, 0, "{run:?}");
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains("name = \"plugin-3d-scans-plugin\""),
        "a package name starts with a letter: {cargo_toml}"
    );
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("pub struct Plugin3dScans {"), "{lib}");
    assert_eq!(tmp.entries(), ["target-here"]);

    // `--dir .` in an empty directory fills it (the directory itself stays).
    let here = tmp.join("here");
    std::fs::create_dir(&here).unwrap();
    let run = Run::of(vivified(&here).args(["new-plugin", "here", "--dir", "."]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(here.join("Cargo.toml").is_file() && here.join(".gitignore").is_file());
    assert_eq!(
        tmp.entries(),
        ["here", "target-here"],
        "no staging folder is left"
    );
}

#[test]
fn invalid_names_are_refused_and_nothing_is_written() {
    let tmp = TempDir::new("names");
    let long = "a".repeat(64);
    for name in [
        "Hello",
        "hello_world",
        "hello world",
        "héllo",
        "",
        &long,
        "a/b",
    ] {
        let run = Run::of(vivified(tmp.path()).args(["new-plugin", name]));
        assert_refused(&run, "invalid plugin name");
        assert!(run.stderr.contains("1 to 63 characters"), "{run:?}");
    }
    let run = Run::of(vivified(tmp.path()).args(["new-plugin", "register"]));
    assert_refused(&run, "the core reserves this id");
    // A control character is escaped: the error stays one line and inert.
    let run = Run::of(vivified(tmp.path()).args(["new-plugin", "a\nb\u{1b}[2J"]));
    assert_refused(&run, "invalid plugin name");
    assert!(!run.stderr.contains('\u{1b}'), "{run:?}");
    assert!(
        tmp.entries().is_empty(),
        "nothing written: {:?}",
        tmp.entries()
    );
}

#[test]
fn an_occupied_target_is_refused_and_left_alone() {
    let tmp = TempDir::new("occupied");
    let dir = tmp.join("hello");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let run = Run::of(vivified(tmp.path()).args(["new-plugin", "hello"]));
    assert_refused(&run, "already exists and is not an empty directory");
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "the directory is untouched");
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );

    // A file in the way.
    std::fs::write(tmp.join("file"), "x").unwrap();
    let run = Run::of(vivified(tmp.path()).args(["new-plugin", "hello", "--dir", "file"]));
    assert_refused(&run, "already exists");
    // A missing parent.
    let run = Run::of(vivified(tmp.path()).args(["new-plugin", "hello", "--dir", "no/such/dir"]));
    assert_refused(&run, "does not exist");
    // An --sdk-path that is not the SDK.
    let run = Run::of(vivified(tmp.path()).args([
        "new-plugin",
        "other",
        "--sdk-path",
        tmp.path().to_str().unwrap(),
    ]));
    assert_refused(&run, "--sdk-path:");
    assert_eq!(tmp.entries(), ["file", "hello"], "nothing else was written");
}

#[test]
fn help_describes_the_command_and_its_options() {
    let tmp = TempDir::new("help");
    let run = Run::of(vivified(tmp.path()).args(["new-plugin", "--help"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Usage: vivified new-plugin"), "{run:?}");
    for option in ["<NAME>", "--dir", "--sdk-path", "--sdk-git", "--sdk-rev"] {
        assert!(run.stdout.contains(option), "{option} in {}", run.stdout);
    }
    let run = Run::of(vivified(tmp.path()).arg("--help"));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("new-plugin"), "{}", run.stdout);
    // Usage errors are clap's, with exit 2.
    let run = Run::of(vivified(tmp.path()).args(["new-plugin"]));
    assert_eq!(run.code, 2, "{run:?}");
    let run = Run::of(vivified(tmp.path()).args([
        "new-plugin",
        "x",
        "--sdk-path",
        ".",
        "--sdk-git",
        "https://example.com/x.git",
    ]));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(tmp.entries().is_empty());
}
