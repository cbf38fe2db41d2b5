//! Manifest validation: the examples in `schemas/examples/`, one unit test per rule
//! code (with its JSON pointer), and property tests (no panics on arbitrary JSON,
//! round-trips, required members, patterns).
//!
//! The expected violations of every file in `schemas/examples/invalid/` live here, in
//! [`expected_invalid`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};
use vivified_domain::manifest::{
    AuditLevel, Contract, DataClass, Manifest, ManifestValidator, PluginTrait, Violation,
};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn validator() -> &'static ManifestValidator {
    static V: OnceLock<ManifestValidator> = OnceLock::new();
    V.get_or_init(|| ManifestValidator::new().expect("the embedded schema compiles"))
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples")
}

/// Every `*.json` file directly in `dir`, sorted by file name.
fn json_files(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 file name")
                .to_owned();
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (name, value)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn valid_examples() -> &'static [(String, Value)] {
    static E: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    E.get_or_init(|| json_files(&examples_dir()))
}

fn invalid_examples() -> Vec<(String, Value)> {
    json_files(&examples_dir().join("invalid"))
}

fn example(name: &str) -> Value {
    valid_examples()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("example {name} is missing"))
}

/// The smallest valid manifest (`minimal.json`).
fn minimal() -> Value {
    example("minimal.json")
}

/// A valid manifest that handles PHI and PII (`ehr-connector.json`).
fn phi() -> Value {
    example("ehr-connector.json")
}

type Found = BTreeSet<(String, String)>;

fn pairs(violations: &[Violation]) -> Found {
    violations
        .iter()
        .map(|v| (v.path.clone(), v.code.clone()))
        .collect()
}

fn set(expected: &[(&str, &str)]) -> Found {
    expected
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect()
}

/// The (path, code) pairs of an invalid manifest; fails the test if it validates.
fn found(manifest: &Value) -> Found {
    match validator().validate(manifest) {
        Ok(m) => panic!("expected violations, but the manifest validated: {m:?}"),
        Err(v) => {
            assert_well_formed(manifest, &v);
            pairs(&v)
        }
    }
}

#[track_caller]
fn assert_violations(manifest: &Value, expected: &[(&str, &str)]) {
    assert_eq!(found(manifest), set(expected), "manifest: {manifest}");
}

#[track_caller]
fn assert_valid(manifest: &Value) -> Manifest {
    match validator().validate(manifest) {
        Ok(m) => m,
        Err(v) => panic!("expected valid, got {v:?} for {manifest}"),
    }
}

/// `base` with the member at `pointer` set to `value` (parents must exist).
fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    base.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent}"))
        .insert(key.to_owned(), value);
    base
}

/// `base` without the member at `pointer`.
fn without(mut base: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    if let Some(obj) = base.pointer_mut(parent).and_then(Value::as_object_mut) {
        obj.remove(key);
    }
    base
}

fn traits_without(base: Value, t: &str) -> Value {
    let traits: Vec<Value> = base["traits"]
        .as_array()
        .expect("traits")
        .iter()
        .filter(|v| v.as_str() != Some(t))
        .cloned()
        .collect();
    with(base, "/traits", Value::Array(traits))
}

const SCHEMA_CODES: &[&str] = &[
    "required",
    "pattern",
    "enum",
    "type",
    "max_length",
    "min_length",
    "max_items",
    "max_properties",
    "unique_items",
];

const RULE_CODES: &[&str] = &[
    "phi_classification_mismatch",
    "pii_classification_mismatch",
    "phi_requires_encryption",
    "phi_requires_audit",
    "phi_requires_audit_level",
    "phi_requires_hipaa_controls",
    "sensitive_requires_authentication",
    "external_service_requires_domains",
    "invalid_domain",
    "invalid_dependency",
    "self_dependency",
    "invalid_endpoint",
];

/// Decodes one JSON-pointer reference token (RFC 6901).
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Checks what must hold of every violation list: non-empty, sorted by (path, code),
/// no duplicates, well-formed pointers, known codes, non-empty messages, and pointers
/// that point where they should (the member itself, or a missing member's parent).
#[track_caller]
fn assert_well_formed(input: &Value, violations: &[Violation]) {
    assert!(
        !violations.is_empty(),
        "an Err carries at least one violation"
    );
    for w in violations.windows(2) {
        let a = (&w[0].path, &w[0].code);
        let b = (&w[1].path, &w[1].code);
        assert!(
            a <= b,
            "violations are sorted by path then code: {violations:?}"
        );
        assert_ne!(w[0], w[1], "violations are deduplicated");
    }
    for v in violations {
        assert!(
            v.path.is_empty() || v.path.starts_with('/'),
            "{v:?}: a JSON pointer"
        );
        assert!(!v.message.is_empty(), "{v:?}: has a message");
        assert!(
            SCHEMA_CODES.contains(&v.code.as_str()) || RULE_CODES.contains(&v.code.as_str()),
            "{v:?}: unknown code"
        );
        if v.path.is_empty() {
            assert!(
                !input.is_object(),
                "{v:?}: a whole-document violation only for a non-object, input {input}"
            );
            assert_eq!(v.code, "type");
        }
        match v.code.as_str() {
            "required" => {
                let (parent, key) = v.path.rsplit_once('/').expect("required has a parent");
                let parent = input
                    .pointer(parent)
                    .and_then(Value::as_object)
                    .unwrap_or_else(|| panic!("{v:?}: the parent of a missing member exists"));
                assert!(
                    !parent.contains_key(&unescape(key)),
                    "{v:?}: the member is really missing"
                );
            }
            code if SCHEMA_CODES.contains(&code) => {
                assert!(
                    input.pointer(&v.path).is_some(),
                    "{v:?}: points at an existing member of {input}"
                );
            }
            "invalid_domain" | "invalid_dependency" | "self_dependency" | "invalid_endpoint" => {
                assert!(
                    input.pointer(&v.path).is_some_and(Value::is_string),
                    "{v:?}: points at the offending string in {input}"
                );
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------
// Data-driven: schemas/examples
// ---------------------------------------------------------------------------------

#[test]
fn every_valid_example_validates() {
    let examples = valid_examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"user-management.json"),
        "the seed's example is among the examples: {names:?}"
    );
    assert!(examples.len() >= 4, "examples: {names:?}");
    for (name, value) in examples {
        let m = validator()
            .validate(value)
            .unwrap_or_else(|v| panic!("{name} must be valid, got {v:?}"));
        assert_eq!(m.raw, *value, "{name}: raw is the input");
        assert_eq!(Some(m.id.as_str()), value["id"].as_str(), "{name}");
        assert_eq!(
            Some(m.version.as_str()),
            value["version"].as_str(),
            "{name}"
        );
        let checked = validator()
            .check_owned(value.clone())
            .unwrap_or_else(|v| panic!("{name}: check_owned refused: {v:?}"));
        assert_eq!((checked.id, checked.raw), (m.id, m.raw), "{name}");
    }
}

#[test]
fn seed_example_is_typed_as_declared() {
    let m = assert_valid(&example("user-management.json"));
    assert_eq!(m.id.as_str(), "user-management");
    assert_eq!(m.name, "User Management Plugin");
    assert_eq!(m.contracts, [Contract::IdentityPlugin]);
    assert_eq!(
        m.traits,
        [PluginTrait::HandlesPii, PluginTrait::AuditRequired]
    );
    assert!(m.has_trait(PluginTrait::HandlesPii));
    assert!(!m.has_trait(PluginTrait::HandlesPhi));
    assert!(m.security.authentication_required);
    assert_eq!(
        m.security.data_classification,
        [DataClass::Pii, DataClass::Internal]
    );
    assert_eq!(m.compliance.audit_level, AuditLevel::Detailed);
    assert_eq!(m.compliance.hipaa_controls, ["164.312(a)", "164.312(d)"]);
    assert_eq!(
        m.endpoints.get("user_info").map(String::as_str),
        Some("/api/users/{id}")
    );
}

/// The exact (path, code) violations of every file in `schemas/examples/invalid/`.
fn expected_invalid() -> BTreeMap<&'static str, Found> {
    BTreeMap::from([
        (
            "external-service-bad-domains.json",
            set(&[
                ("/allowed_domains/0", "invalid_domain"), // 10.0.0.1: IP literal
                ("/allowed_domains/1", "invalid_domain"), // localhost
                ("/allowed_domains/2", "invalid_domain"), // printer.local
                ("/allowed_domains/3", "invalid_domain"), // db.internal
                ("/allowed_domains/4", "invalid_domain"), // *.*.example.com
                ("/allowed_domains/5", "invalid_domain"), // "exa mple.com"
                ("/dependencies/0", "self_dependency"),   // webhook-sender itself
                ("/dependencies/1", "invalid_dependency"), // Not_An_Id
                ("/endpoints/health", "invalid_endpoint"), // "health" lacks the leading /
            ]),
        ),
        (
            "phi-blank-hipaa-controls.json",
            set(&[
                ("/compliance/hipaa_controls", "phi_requires_hipaa_controls"), // none cites
                ("/compliance/hipaa_controls/0", "min_length"),                // ""
                ("/compliance/hipaa_controls/0", "pattern"),
                ("/compliance/hipaa_controls/1", "pattern"), // " "
                ("/compliance/hipaa_controls/2", "pattern"), // HIPAA
                ("/compliance/hipaa_controls/3", "pattern"), // 164.312(B)
            ]),
        ),
        (
            "phi-without-encryption.json",
            set(&[
                ("/compliance/audit_level", "phi_requires_audit_level"), // basic
                ("/compliance/hipaa_controls", "phi_requires_hipaa_controls"), // []
                (
                    "/security/authentication_required",
                    "sensitive_requires_authentication",
                ), // false
                ("/traits", "phi_requires_audit"),                       // no audit_required
                ("/traits", "phi_requires_encryption"),                  // no requires_encryption
            ]),
        ),
        (
            "schema-errors.json",
            set(&[
                ("/compliance", "required"),
                ("/contracts/0", "enum"), // TelepathyPlugin
                ("/id", "pattern"),       // Bad_ID
                ("/security/authentication_required", "required"),
                // handles_pii without authentication_required: true.
                (
                    "/security/authentication_required",
                    "sensitive_requires_authentication",
                ),
                ("/traits", "unique_items"), // handles_pii twice
                ("/version", "pattern"),     // 1.0
            ]),
        ),
    ])
}

#[test]
fn every_invalid_example_has_exactly_its_expected_violations() {
    let expected = expected_invalid();
    let files = invalid_examples();
    let names: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let listed: BTreeSet<&str> = expected.keys().copied().collect();
    assert_eq!(
        names, listed,
        "every invalid example has its expected violations listed here, and only those"
    );
    for (name, value) in &files {
        assert_eq!(found(value), expected[name.as_str()], "{name}");
        assert_eq!(
            validator().check_owned(value.clone()).err(),
            validator().validate(value).err(),
            "{name}: check_owned refuses as validate does"
        );
    }
}

// ---------------------------------------------------------------------------------
// Schema rules
// ---------------------------------------------------------------------------------

const TOP_REQUIRED: &[&str] = &[
    "/id",
    "/name",
    "/version",
    "/contracts",
    "/traits",
    "/security",
    "/compliance",
];
const NESTED_REQUIRED: &[&str] = &[
    "/security/authentication_required",
    "/security/data_classification",
    "/compliance/hipaa_controls",
    "/compliance/audit_level",
];

#[test]
fn required_is_reported_at_the_missing_members_own_pointer() {
    for ptr in TOP_REQUIRED.iter().chain(NESTED_REQUIRED) {
        assert_violations(&without(minimal(), ptr), &[(ptr, "required")]);
    }
    // Several missing at once: each at its own pointer.
    assert_violations(
        &json!({"id": "x", "security": {}, "compliance": {}}),
        &[
            ("/compliance/audit_level", "required"),
            ("/compliance/hipaa_controls", "required"),
            ("/contracts", "required"),
            ("/name", "required"),
            ("/security/authentication_required", "required"),
            ("/security/data_classification", "required"),
            ("/traits", "required"),
            ("/version", "required"),
        ],
    );
    // Optional members are optional.
    let mut bare = phi();
    for opt in [
        "description",
        "dependencies",
        "allowed_domains",
        "endpoints",
    ] {
        bare.as_object_mut().unwrap().remove(opt);
    }
    assert_valid(&bare);
}

#[test]
fn pattern_on_id_and_version() {
    for bad in [
        "Bad_ID",
        "UPPER",
        "with space",
        "under_score",
        "dot.ted",
        "é",
    ] {
        assert_violations(&with(minimal(), "/id", json!(bad)), &[("/id", "pattern")]);
    }
    assert_violations(
        &with(minimal(), "/id", json!("")),
        &[("/id", "min_length"), ("/id", "pattern")],
    );
    for ok in ["a", "0", "a-b-c", "-", "plugin-2"] {
        assert_valid(&with(minimal(), "/id", json!(ok)));
    }
    for bad in [
        "1.0",
        "1",
        "v1.0.0",
        "1.0.0-beta",
        "1.0.0.0",
        "1.0.0\n",
        "a.b.c",
        " 1.0.0",
        "",
        "١.٢.٣",
    ] {
        assert_violations(
            &with(minimal(), "/version", json!(bad)),
            &[("/version", "pattern")],
        );
    }
    for ok in ["0.0.0", "1.2.3", "10.20.30", "01.002.3"] {
        assert_valid(&with(minimal(), "/version", json!(ok)));
    }
}

#[test]
fn enum_on_contracts_traits_classification_and_audit_level() {
    assert_violations(
        &with(
            minimal(),
            "/contracts",
            json!(["StoragePlugin", "TelepathyPlugin"]),
        ),
        &[("/contracts/1", "enum")],
    );
    assert_violations(
        &with(minimal(), "/traits", json!(["flies"])),
        &[("/traits/0", "enum")],
    );
    assert_violations(
        &with(
            minimal(),
            "/security/data_classification",
            json!(["public", "top_secret"]),
        ),
        &[("/security/data_classification/1", "enum")],
    );
    assert_violations(
        &with(minimal(), "/compliance/audit_level", json!("verbose")),
        &[("/compliance/audit_level", "enum")],
    );
    // Enums are case-sensitive.
    assert_violations(
        &with(minimal(), "/contracts", json!(["storageplugin"])),
        &[("/contracts/0", "enum")],
    );
    for level in ["none", "basic", "detailed", "complete"] {
        assert_valid(&with(minimal(), "/compliance/audit_level", json!(level)));
    }
}

/// An unknown enum value close to a valid one is still refused, and its message names
/// the valid one (never the value sent); a distant one gets no suggestion.
#[test]
fn an_enum_violation_names_the_nearest_valid_value() {
    let message = |pointer: &str, value: Value| -> String {
        let v = validator()
            .validate(&with(minimal(), pointer, value))
            .expect_err("invalid");
        v.iter()
            .find(|v| v.code == "enum")
            .unwrap_or_else(|| panic!("an enum violation: {v:?}"))
            .message
            .clone()
    };
    for (pointer, value, meant) in [
        (
            "/traits",
            json!(["encryption_required"]),
            "requires_encryption",
        ),
        ("/traits", json!(["HandlesPii"]), "handles_pii"),
        ("/contracts", json!(["storageplugin"]), "StoragePlugin"),
        ("/contracts", json!(["identity-plugin"]), "IdentityPlugin"),
        (
            "/security/data_classification",
            json!(["Confidental"]),
            "confidential",
        ),
        ("/compliance/audit_level", json!("Basic"), "basic"),
    ] {
        let got = message(pointer, value.clone());
        assert!(
            got.contains(&format!("did you mean `{meant}`?")),
            "{value}: {got}"
        );
        let sent = value.as_array().map_or(value.clone(), |a| a[0].clone());
        assert!(!got.contains(sent.as_str().expect("a string")), "{got}");
    }
    for (pointer, value) in [
        ("/traits", json!(["flies"])),
        ("/compliance/audit_level", json!("verbose")),
        ("/compliance/audit_level", json!(3)),
    ] {
        let got = validator()
            .validate(&with(minimal(), pointer, value.clone()))
            .expect_err("invalid");
        assert!(
            got.iter().all(|v| !v.message.contains("did you mean")),
            "{value}: {got:?}"
        );
    }
}

#[test]
fn type_of_every_member() {
    for (ptr, bad) in [
        ("/id", json!(5)),
        ("/name", json!(null)),
        ("/version", json!(1.0)),
        ("/description", json!(["x"])),
        ("/contracts", json!("StoragePlugin")),
        ("/traits", json!({})),
        ("/dependencies", json!("a")),
        ("/allowed_domains", json!(true)),
        ("/endpoints", json!(["/health"])),
        ("/security", json!("yes")),
        ("/compliance", json!(1)),
        ("/security/authentication_required", json!("true")),
        ("/security/data_classification", json!("public")),
        ("/compliance/hipaa_controls", json!("164.312(a)")),
    ] {
        assert_violations(&with(minimal(), ptr, bad), &[(ptr, "type")]);
    }
    // Items and endpoint values.
    assert_violations(
        &with(minimal(), "/dependencies", json!(["ok", 7])),
        &[("/dependencies/1", "type")],
    );
    assert_violations(
        &with(
            minimal(),
            "/endpoints",
            json!({"health": "/health", "n": 1}),
        ),
        &[("/endpoints/n", "type")],
    );
    // audit_level has a type and an enum.
    let found = found(&with(minimal(), "/compliance/audit_level", json!(3)));
    assert!(found.contains(&("/compliance/audit_level".into(), "type".into())));
    // The document itself must be an object.
    for doc in [
        json!(null),
        json!([]),
        json!("manifest"),
        json!(42),
        json!(true),
    ] {
        assert_violations(&doc, &[("", "type")]);
    }
}

#[test]
fn max_length_of_id_name_and_description() {
    assert_valid(&with(minimal(), "/id", json!("a".repeat(63))));
    assert_violations(
        &with(minimal(), "/id", json!("a".repeat(64))),
        &[("/id", "max_length")],
    );
    assert_valid(&with(minimal(), "/name", json!("n".repeat(128))));
    assert_violations(
        &with(minimal(), "/name", json!("n".repeat(129))),
        &[("/name", "max_length")],
    );
    // Characters, not bytes.
    assert_valid(&with(minimal(), "/name", json!("é".repeat(128))));
    assert_violations(
        &with(minimal(), "/name", json!("")),
        &[("/name", "min_length")],
    );
    assert_valid(&with(minimal(), "/description", json!("d".repeat(1024))));
    assert_violations(
        &with(minimal(), "/description", json!("d".repeat(1025))),
        &[("/description", "max_length")],
    );
}

fn distinct(n: usize, f: impl Fn(usize) -> String) -> Value {
    Value::Array((0..n).map(|i| Value::String(f(i))).collect())
}

#[test]
fn max_items_of_arrays_and_max_properties_of_endpoints() {
    for (ptr, make) in [
        (
            "/compliance/hipaa_controls",
            (|i| format!("164.312({i})")) as fn(usize) -> String,
        ),
        ("/dependencies", |i| format!("dep-{i}")),
        ("/allowed_domains", |i| format!("h{i}.example.com")),
    ] {
        assert_valid(&with(minimal(), ptr, distinct(64, make)));
        assert_violations(
            &with(minimal(), ptr, distinct(65, make)),
            &[(ptr, "max_items")],
        );
    }
    // Enum arrays: 65 items are necessarily duplicates, so both are reported.
    let many: Vec<&str> = std::iter::repeat_n("public", 65).collect();
    assert_violations(
        &with(minimal(), "/security/data_classification", json!(many)),
        &[
            ("/security/data_classification", "max_items"),
            ("/security/data_classification", "unique_items"),
        ],
    );
    let endpoints = |n: usize| -> Value {
        Value::Object(
            (0..n)
                .map(|i| (format!("e{i}"), Value::String(format!("/e/{i}"))))
                .collect(),
        )
    };
    assert_valid(&with(minimal(), "/endpoints", endpoints(64)));
    assert_violations(
        &with(minimal(), "/endpoints", endpoints(65)),
        &[("/endpoints", "max_properties")],
    );
}

#[test]
fn unique_items_on_every_array() {
    for (ptr, dup) in [
        ("/contracts", json!(["StoragePlugin", "StoragePlugin"])),
        ("/traits", json!(["audit_required", "audit_required"])),
        ("/dependencies", json!(["a-b", "a-b"])),
        (
            "/allowed_domains",
            json!(["api.example.com", "api.example.com"]),
        ),
        ("/security/data_classification", json!(["public", "public"])),
        (
            "/compliance/hipaa_controls",
            json!(["164.312(a)", "164.312(a)"]),
        ),
    ] {
        assert_violations(&with(minimal(), ptr, dup), &[(ptr, "unique_items")]);
    }
}

// ---------------------------------------------------------------------------------
// Domain rules
// ---------------------------------------------------------------------------------

#[test]
fn phi_classification_mismatch_both_directions() {
    // Trait without classification: reported at the classification.
    assert_violations(
        &with(phi(), "/security/data_classification", json!(["pii"])),
        &[(
            "/security/data_classification",
            "phi_classification_mismatch",
        )],
    );
    // Classification without trait: reported at the traits.
    let m = with(
        minimal(),
        "/security/data_classification",
        json!(["public", "phi"]),
    );
    assert_violations(&m, &[("/traits", "phi_classification_mismatch")]);
}

#[test]
fn pii_classification_mismatch_both_directions() {
    let um = example("user-management.json");
    assert_violations(
        &with(
            um.clone(),
            "/security/data_classification",
            json!(["internal"]),
        ),
        &[(
            "/security/data_classification",
            "pii_classification_mismatch",
        )],
    );
    assert_violations(
        &traits_without(um, "handles_pii"),
        &[("/traits", "pii_classification_mismatch")],
    );
    let m = with(
        minimal(),
        "/security/data_classification",
        json!(["pii", "public"]),
    );
    assert_violations(&m, &[("/traits", "pii_classification_mismatch")]);
}

#[test]
fn phi_requires_encryption() {
    assert_violations(
        &traits_without(phi(), "requires_encryption"),
        &[("/traits", "phi_requires_encryption")],
    );
}

#[test]
fn phi_requires_audit() {
    assert_violations(
        &traits_without(phi(), "audit_required"),
        &[("/traits", "phi_requires_audit")],
    );
}

#[test]
fn phi_requires_audit_level() {
    for level in ["none", "basic"] {
        assert_violations(
            &with(phi(), "/compliance/audit_level", json!(level)),
            &[("/compliance/audit_level", "phi_requires_audit_level")],
        );
    }
    for level in ["detailed", "complete"] {
        assert_valid(&with(phi(), "/compliance/audit_level", json!(level)));
    }
    // A missing level is also reported by the rule, next to `required`.
    assert_violations(
        &without(phi(), "/compliance/audit_level"),
        &[
            ("/compliance/audit_level", "phi_requires_audit_level"),
            ("/compliance/audit_level", "required"),
        ],
    );
}

#[test]
fn phi_requires_hipaa_controls() {
    assert_violations(
        &with(phi(), "/compliance/hipaa_controls", json!([])),
        &[("/compliance/hipaa_controls", "phi_requires_hipaa_controls")],
    );
    assert_valid(&with(
        phi(),
        "/compliance/hipaa_controls",
        json!(["164.312(a)"]),
    ));
}

#[test]
fn sensitive_requires_authentication() {
    for m in [phi(), example("user-management.json")] {
        assert_violations(
            &with(m, "/security/authentication_required", json!(false)),
            &[(
                "/security/authentication_required",
                "sensitive_requires_authentication",
            )],
        );
    }
    // Non-sensitive plugins may be open.
    assert_valid(&with(
        minimal(),
        "/security/authentication_required",
        json!(false),
    ));
}

#[test]
fn external_service_requires_domains() {
    let ext = with(minimal(), "/traits", json!(["external_service"]));
    assert_violations(
        &ext,
        &[("/allowed_domains", "external_service_requires_domains")],
    );
    assert_violations(
        &with(ext.clone(), "/allowed_domains", json!([])),
        &[("/allowed_domains", "external_service_requires_domains")],
    );
    assert_valid(&with(ext, "/allowed_domains", json!(["api.example.com"])));
}

#[test]
fn invalid_domain_for_each_kind_of_bad_host() {
    for bad in [
        // IP literals.
        "10.0.0.1",
        "127.0.0.1",
        "::1",
        "[::1]",
        "2001:db8::1",
        "1.2.3.4.5",
        "example.123",
        // Loopback names.
        "localhost",
        "LOCALHOST",
        "api.localhost",
        // Private suffixes.
        "printer.local",
        "db.internal",
        "*.corp.internal",
        "Printer.LOCAL",
        // Wildcards other than one leading label.
        "*.*.example.com",
        "api.*.example.com",
        "*example.com",
        "*.com",
        "*.",
        // Bad labels.
        "exa mple.com",
        "a_b.example.com",
        "-a.example.com",
        "a-.example.com",
        "a..example.com",
        "example.com.",
        ".example.com",
        "com",
        "",
        "https://example.com",
        "example.com:443",
        &format!("{}.example.com", "a".repeat(64)),
    ] {
        let m = with(
            minimal(),
            "/allowed_domains",
            json!(["ok.example.com", bad]),
        );
        assert_violations(&m, &[("/allowed_domains/1", "invalid_domain")]);
    }
    for ok in [
        "example.com",
        "api.example.com",
        "*.example.com",
        "EXAMPLE.com",
        "xn--bcher-kva.example",
        "a-b.c-d.example.org",
        "localhost.example.com",
        &format!("{}.example.com", "a".repeat(63)),
    ] {
        assert_valid(&with(minimal(), "/allowed_domains", json!([ok])));
    }
}

#[test]
fn invalid_and_self_dependencies() {
    for bad in [
        "Not_An_Id",
        "UPPER",
        "",
        "with space",
        "a/b",
        &"a".repeat(64),
    ] {
        assert_violations(
            &with(minimal(), "/dependencies", json!(["fine", bad])),
            &[("/dependencies/1", "invalid_dependency")],
        );
    }
    assert_violations(
        &with(minimal(), "/dependencies", json!(["other", "minimal"])),
        &[("/dependencies/1", "self_dependency")],
    );
    assert_valid(&with(
        minimal(),
        "/dependencies",
        json!(["user-management", &"b".repeat(63)]),
    ));
}

#[test]
fn invalid_endpoint_paths_escape_their_names() {
    assert_violations(
        &with(minimal(), "/endpoints", json!({"health": "health"})),
        &[("/endpoints/health", "invalid_endpoint")],
    );
    assert_violations(
        &with(
            minimal(),
            "/endpoints",
            json!({"a/b": "x", "t~x": "", "ok": "/ok", "url": "http://evil.example.com/"}),
        ),
        &[
            ("/endpoints/a~1b", "invalid_endpoint"),
            ("/endpoints/t~0x", "invalid_endpoint"),
            ("/endpoints/url", "invalid_endpoint"),
        ],
    );
    assert_valid(&with(
        minimal(),
        "/endpoints",
        json!({"root": "/", "deep": "/a/b/{id}"}),
    ));
}

#[test]
fn unknown_top_level_members_are_accepted_and_kept() {
    let mut m = minimal();
    m["subscriptions"] = json!(["notification.*", "user.created"]);
    m["x-vendor"] = json!({"nested": [1, 2, {"deep": null}]});
    let v = assert_valid(&m);
    assert_eq!(v.raw, m);
    assert_eq!(v.raw["subscriptions"][1], "user.created");
    assert_eq!(v.raw["x-vendor"]["nested"][2], json!({"deep": null}));
    // Unknown nested members too.
    let nested = with(minimal(), "/security/x-extra", json!(true));
    assert_eq!(assert_valid(&nested).raw, nested);
}

#[test]
fn every_violation_is_reported_at_once() {
    let m = json!({
        "id": "Many_Problems",
        "name": "",
        "version": "one",
        "description": "d".repeat(1025),
        "contracts": ["StoragePlugin", "StoragePlugin", "Nope"],
        "traits": ["handles_phi", "external_service"],
        "dependencies": ["Bad Dep", "fine"],
        "allowed_domains": ["localhost"],
        "endpoints": {"health": "health"},
        "security": {"authentication_required": "no", "data_classification": ["pii"]},
        "compliance": {"audit_level": "basic"},
        "x-unknown": "kept, not reported"
    });
    assert_violations(
        &m,
        &[
            ("/allowed_domains/0", "invalid_domain"),
            ("/compliance/audit_level", "phi_requires_audit_level"),
            ("/compliance/hipaa_controls", "phi_requires_hipaa_controls"),
            ("/compliance/hipaa_controls", "required"),
            ("/contracts", "unique_items"),
            ("/contracts/2", "enum"),
            ("/dependencies/0", "invalid_dependency"),
            ("/description", "max_length"),
            ("/endpoints/health", "invalid_endpoint"),
            ("/id", "pattern"),
            ("/name", "min_length"),
            (
                "/security/authentication_required",
                "sensitive_requires_authentication",
            ),
            ("/security/authentication_required", "type"),
            (
                "/security/data_classification",
                "phi_classification_mismatch",
            ),
            ("/traits", "phi_requires_audit"),
            ("/traits", "phi_requires_encryption"),
            ("/traits", "pii_classification_mismatch"),
            ("/version", "pattern"),
        ],
    );
}

#[test]
fn messages_never_echo_the_offending_value() {
    let marker = "zqxmarker";
    let m = json!({
        "id": format!("{marker}_ID"),
        "name": format!("{marker}{}", "n".repeat(200)),
        "version": format!("{marker}.1"),
        "contracts": [format!("{marker}C")],
        "traits": [format!("{marker}T")],
        "dependencies": [format!("{marker} dep")],
        "allowed_domains": [format!("{marker}.local")],
        "endpoints": {"e": format!("{marker}-path")},
        "security": {"authentication_required": marker, "data_classification": [marker]},
        "compliance": {"hipaa_controls": marker, "audit_level": marker}
    });
    let violations = validator().validate(&m).expect_err("invalid");
    assert!(violations.len() >= 10, "{violations:?}");
    for v in &violations {
        assert!(!v.message.contains(marker), "{v:?} echoes the value");
        assert!(!v.to_string().contains(marker), "{v} echoes the value");
    }
}

#[test]
fn violation_display_names_path_message_and_code() {
    let v = validator().validate(&json!(null)).expect_err("invalid");
    assert_eq!(v.len(), 1);
    let shown = v[0].to_string();
    assert!(shown.starts_with("/: "), "{shown}");
    assert!(shown.ends_with("(type)"), "{shown}");
    let v = validator()
        .validate(&with(minimal(), "/version", json!("1")))
        .expect_err("invalid");
    assert!(v[0].to_string().starts_with("/version: "), "{}", v[0]);
}

// ---------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------

const MANIFEST_KEYS: &[&str] = &[
    "id",
    "name",
    "version",
    "description",
    "contracts",
    "traits",
    "dependencies",
    "allowed_domains",
    "endpoints",
    "security",
    "compliance",
    "authentication_required",
    "data_classification",
    "hipaa_controls",
    "audit_level",
];

const INTERESTING_STRINGS: &[&str] = &[
    "",
    "minimal",
    "Bad_ID",
    "1.0.0",
    "1.0",
    "handles_phi",
    "handles_pii",
    "requires_encryption",
    "external_service",
    "audit_required",
    "phi",
    "pii",
    "public",
    "internal",
    "confidential",
    "StoragePlugin",
    "CommunicationPlugin",
    "IdentityPlugin",
    "none",
    "basic",
    "detailed",
    "complete",
    "localhost",
    "10.0.0.1",
    "*.example.com",
    "api.example.com",
    "*.*.x",
    "/health",
    "health",
    "a/b",
    "t~x",
    "~1",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(INTERESTING_STRINGS).prop_map(str::to_owned),
        1 => "[a-z0-9.*/~ _-]{0,12}",
        1 => any::<String>(),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(MANIFEST_KEYS).prop_map(str::to_owned),
        1 => arb_string(),
    ]
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        arb_string().prop_map(Value::String),
    ]
}

/// Arbitrary JSON of bounded depth and size, biased towards the manifest's keys and
/// values so that deep rules are reached.
fn arb_json() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(arb_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid example with a few members replaced by arbitrary JSON, removed, or added.
fn arb_mutated_example() -> impl Strategy<Value = Value> {
    let n = valid_examples().len();
    (
        0..n,
        proptest::collection::vec(
            (
                proptest::sample::select(
                    TOP_REQUIRED
                        .iter()
                        .chain(NESTED_REQUIRED)
                        .copied()
                        .chain([
                            "/description",
                            "/dependencies",
                            "/allowed_domains",
                            "/endpoints",
                            "/x-extra",
                        ])
                        .collect::<Vec<_>>(),
                ),
                proptest::option::of(arb_json()),
            ),
            0..5,
        ),
    )
        .prop_map(|(i, edits)| {
            let mut m = valid_examples()[i].1.clone();
            for (ptr, value) in edits {
                let (parent, key) = ptr.rsplit_once('/').unwrap_or_default();
                if let Some(obj) = m.pointer_mut(parent).and_then(Value::as_object_mut) {
                    match value {
                        Some(v) => obj.insert(key.to_owned(), v),
                        None => obj.remove(key),
                    };
                }
            }
            m
        })
}

fn check_any(input: &Value) -> Result<(), TestCaseError> {
    // The registry's cheaper check (no typed view) accepts exactly what `validate`
    // accepts, with the same id, and refuses with the same violations.
    let checked = validator().check_owned(input.clone());
    match validator().validate(input) {
        Ok(m) => {
            let c =
                checked.map_err(|v| TestCaseError::fail(format!("check_owned refused: {v:?}")))?;
            prop_assert_eq!(&c.id, &m.id);
            prop_assert_eq!(&c.raw, input);
            prop_assert_eq!(&m.raw, input);
            let again = validator()
                .validate(&m.raw)
                .map_err(|v| TestCaseError::fail(format!("re-validation failed: {v:?}")))?;
            prop_assert_eq!(again, m);
        }
        Err(v) => {
            assert_well_formed(input, &v);
            prop_assert_eq!(checked.err(), Some(v));
        }
    }
    Ok(())
}

fn ascii_pattern(s: &str, version: bool) -> bool {
    if version {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    } else {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }
}

fn arb_not_matching(version: bool) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-zA-Z. _\\-]{0,10}",
        "[0-9]{1,3}(\\.[0-9]{1,3}){0,4}[ \n]?",
    ]
    .prop_filter("must not match the pattern", move |s| {
        !ascii_pattern(s, version)
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn validation_never_panics_on_arbitrary_json(input in arb_json()) {
        check_any(&input)?;
    }

    #[test]
    fn validation_never_panics_on_mutated_examples(input in arb_mutated_example()) {
        check_any(&input)?;
    }

    #[test]
    fn validation_never_panics_on_manifest_shaped_objects(
        members in proptest::collection::btree_map(arb_key(), arb_json(), 0..12)
    ) {
        check_any(&Value::Object(members.into_iter().collect()))?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn every_valid_example_round_trips(
        i in 0..valid_examples().len(),
        extra in proptest::collection::btree_map("x-[a-z]{1,8}", arb_json(), 0..3),
    ) {
        let mut input = valid_examples()[i].1.clone();
        for (k, v) in extra {
            input[k] = v;
        }
        let m = validator()
            .validate(&input)
            .map_err(|v| TestCaseError::fail(format!("{}: {v:?}", valid_examples()[i].0)))?;
        prop_assert_eq!(&m.raw, &input);
        let again = validator()
            .validate(&m.raw)
            .map_err(|v| TestCaseError::fail(format!("re-validation failed: {v:?}")))?;
        prop_assert_eq!(again, m);
    }

    #[test]
    fn removing_a_required_member_is_reported_at_its_pointer(
        i in 0..valid_examples().len(),
        ptr in proptest::sample::select(TOP_REQUIRED.iter().chain(NESTED_REQUIRED).copied().collect::<Vec<_>>()),
    ) {
        let input = without(valid_examples()[i].1.clone(), ptr);
        let violations = validator().validate(&input).expect_err("a required member is missing");
        assert_well_formed(&input, &violations);
        prop_assert!(
            violations.iter().any(|v| v.path == ptr && v.code == "required"),
            "{}: {:?}", ptr, violations
        );
    }

    #[test]
    fn an_id_not_matching_its_pattern_is_reported_at_id(
        i in 0..valid_examples().len(),
        id in arb_not_matching(false),
    ) {
        let input = with(valid_examples()[i].1.clone(), "/id", Value::String(id));
        let violations = validator().validate(&input).expect_err("the id is broken");
        assert_well_formed(&input, &violations);
        prop_assert!(
            violations.iter().any(|v| v.path == "/id" && v.code == "pattern"),
            "{:?}", violations
        );
    }

    #[test]
    fn a_version_not_matching_its_pattern_is_reported_at_version(
        i in 0..valid_examples().len(),
        version in arb_not_matching(true),
    ) {
        let input = with(valid_examples()[i].1.clone(), "/version", Value::String(version));
        let violations = validator().validate(&input).expect_err("the version is broken");
        assert_well_formed(&input, &violations);
        prop_assert_eq!(
            pairs(&violations),
            set(&[("/version", "pattern")])
        );
    }

    #[test]
    fn ids_and_versions_matching_their_patterns_are_accepted(
        id in "[a-z0-9-]{1,63}",
        version in "[0-9]{1,6}\\.[0-9]{1,6}\\.[0-9]{1,6}",
    ) {
        let input = with(with(minimal(), "/id", json!(id)), "/version", json!(version));
        let m = validator()
            .validate(&input)
            .map_err(|v| TestCaseError::fail(format!("{v:?}")))?;
        prop_assert_eq!(m.id.as_str(), id.as_str());
        prop_assert_eq!(m.version, version);
    }
}

#[test]
fn subscriptions_are_optional_event_type_patterns() {
    assert_valid(&with(
        minimal(),
        "/subscriptions",
        json!(["user.created", "user.*", "*.deleted", "*"]),
    ));
    // Upper case, as plugins written for the original Python core name events.
    assert_valid(&with(
        minimal(),
        "/subscriptions",
        json!(["UserCreated", "User.*", "user.Created", "NotificationSent"]),
    ));
    for bad in [
        "User created",
        "Usér.created",
        "user.",
        "user..x",
        "user.>",
        "user.**",
        "",
        "a b",
    ] {
        assert_violations(
            &with(minimal(), "/subscriptions", json!([bad])),
            &[("/subscriptions/0", "pattern")],
        );
    }
    assert_violations(
        &with(minimal(), "/subscriptions", json!(["a.b", "a.b"])),
        &[("/subscriptions", "unique_items")],
    );
    assert_violations(
        &with(minimal(), "/subscriptions", json!(["a".repeat(256)])),
        &[("/subscriptions/0", "max_length")],
    );
    assert_violations(
        &with(
            minimal(),
            "/subscriptions",
            distinct(65, |i| format!("e.{i}")),
        ),
        &[("/subscriptions", "max_items")],
    );
    assert_violations(
        &with(minimal(), "/subscriptions", json!("user.*")),
        &[("/subscriptions", "type")],
    );
}
