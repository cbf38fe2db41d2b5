//! `vivified validate`: the same answers as the core's `ManifestValidator`, every
//! violation with its path, `--json`, and exit codes 0 / 1 / 2.

use serde_json::Value;
use vivified_domain::{ManifestValidator, Violation};

use crate::common::{Run, TempDir, repo, vivified};

fn violations_of(rel: &str) -> Vec<Violation> {
    let v: Value = serde_json::from_slice(&std::fs::read(repo(rel)).unwrap()).unwrap();
    ManifestValidator::new()
        .unwrap()
        .validate(&v)
        .expect_err("an invalid example")
}

const VALID: &[&str] = &[
    "schemas/examples/user-management.json",
    "schemas/examples/minimal.json",
    "schemas/examples/ehr-connector.json",
    "schemas/examples/email-gateway.json",
];

const INVALID: &[&str] = &[
    "schemas/examples/invalid/phi-without-encryption.json",
    "schemas/examples/invalid/schema-errors.json",
    "schemas/examples/invalid/external-service-bad-domains.json",
];

#[test]
fn valid_manifests_exit_0_with_one_line_each() {
    let dir = TempDir::new("cli");
    let run = Run::of(
        vivified(dir.path())
            .arg("validate")
            .args(VALID.iter().map(|p| repo(p))),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), VALID.len(), "{}", run.stdout);
    assert!(lines[0].ends_with("user-management.json: valid (user-management 1.0.0)"));
    for line in lines {
        assert!(line.contains(": valid ("), "{line}");
    }
}

#[test]
fn an_invalid_manifest_lists_every_violation_with_its_path() {
    let dir = TempDir::new("cli");
    for rel in INVALID {
        let expected = violations_of(rel);
        assert!(expected.len() > 1, "the example has several violations");
        let run = Run::of(vivified(dir.path()).arg("validate").arg(repo(rel)));
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(run.stderr, "");
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert!(
            lines[0].ends_with(&format!(": invalid, {} violations:", expected.len())),
            "{}",
            lines[0]
        );
        assert_eq!(lines.len(), expected.len() + 1, "{}", run.stdout);
        for (line, v) in lines[1..].iter().zip(&expected) {
            assert_eq!(
                *line,
                format!("  {}: {} ({})", v.path, v.message, v.code),
                "every violation, in the validator's order"
            );
            assert!(v.path.starts_with('/'));
        }
    }
}

#[test]
fn json_output_carries_the_validators_violations_exactly() {
    let dir = TempDir::new("cli");
    let invalid = INVALID[0];
    let run = Run::of(
        vivified(dir.path())
            .args(["validate", "--json"])
            .arg(repo(VALID[0]))
            .arg(repo(invalid)),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "");
    let report: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(report["valid"], false);
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["status"], "valid");
    assert_eq!(files[0]["plugin_id"], "user-management");
    assert_eq!(files[0]["version"], "1.0.0");
    assert_eq!(files[1]["status"], "invalid");
    let got: Vec<Violation> = serde_json::from_value(files[1]["violations"].clone()).unwrap();
    assert_eq!(got, violations_of(invalid));

    let run = Run::of(
        vivified(dir.path())
            .args(["validate", "--json"])
            .arg(repo(VALID[1])),
    );
    assert_eq!(run.code, 0);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["valid"], true);
}

#[test]
fn unreadable_files_exit_2_and_every_other_file_is_still_checked() {
    let dir = TempDir::new("cli");
    let not_json = dir.join("broken.json");
    std::fs::write(&not_json, "{\"id\": \"x\",").unwrap();
    let missing = dir.join("missing.json");

    let run = Run::of(
        vivified(dir.path())
            .arg("validate")
            .arg(repo(VALID[0]))
            .arg(&missing)
            .arg(repo(INVALID[0])),
    );
    assert_eq!(run.code, 2, "the worst outcome wins: {run:?}");
    run.assert_one_error_line("vivified", "missing.json: cannot read:");
    assert!(run.stdout.contains("user-management.json: valid"));
    assert!(run.stdout.contains("phi-without-encryption.json: invalid"));

    let run = Run::of(vivified(dir.path()).arg("validate").arg(&not_json));
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line("vivified", "broken.json: not JSON:");
    assert_eq!(run.stdout, "");

    // A member named twice: refused as the core refuses it, not read as the last one.
    let twice = dir.join("twice.json");
    let valid = std::fs::read_to_string(repo(VALID[0])).unwrap();
    std::fs::write(
        &twice,
        valid.replacen('{', r#"{"traits": ["handles_phi"],"#, 1),
    )
    .unwrap();
    let run = Run::of(vivified(dir.path()).arg("validate").arg(&twice));
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line(
        "vivified",
        "twice.json: not a manifest: duplicate member `/traits`",
    );

    let run = Run::of(
        vivified(dir.path())
            .args(["validate", "--json"])
            .arg(&missing)
            .arg(&not_json),
    );
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr, "", "--json reports everything on stdout");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    for f in report["files"].as_array().unwrap() {
        assert_eq!(f["status"], "unreadable");
        assert!(f["error"].as_str().unwrap().len() > 5);
    }
}

#[test]
fn a_manifest_that_is_json_but_not_an_object_is_invalid_not_unreadable() {
    let dir = TempDir::new("cli");
    let path = dir.join("array.json");
    std::fs::write(&path, "[1, 2]").unwrap();
    let run = Run::of(vivified(dir.path()).arg("validate").arg(&path));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("array.json: invalid, 1 violation:"));
}

#[test]
fn control_characters_in_a_manifest_never_reach_the_terminal() {
    let dir = TempDir::new("cli");
    let path = dir.join("evil.json");
    std::fs::write(
        &path,
        r#"{"id": "x", "name": "n", "version": "1.0.0", "contracts": [], "traits": [],
            "security": {"authentication_required": true, "data_classification": []},
            "endpoints": {"\u001b[2J": "no-leading-slash"},
            "compliance": {"hipaa_controls": [], "audit_level": "none"}}"#,
    )
    .unwrap();
    let run = Run::of(vivified(dir.path()).arg("validate").arg(&path));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stdout.contains('\u{1b}'), "{:?}", run.stdout);
    assert!(
        run.stdout.contains("/endpoints/\\u{1b}[2J: "),
        "the path is shown, escaped: {}",
        run.stdout
    );
}

#[test]
fn no_file_is_a_usage_error() {
    let dir = TempDir::new("cli");
    let run = Run::of(vivified(dir.path()).arg("validate"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("MANIFEST"), "{}", run.stderr);
}
