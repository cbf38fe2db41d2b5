//! Every manifest the SDK builds is one the core's schema and rules accept, and the
//! SDK's own check agrees with the core's validator (`vivified-domain`'s
//! `ManifestValidator`, compiled from `schemas/manifest.schema.json`).

use std::collections::BTreeSet;

use serde_json::Value;
use vivified_domain::ManifestValidator;
use vivified_plugin_sdk::{AuditLevel, Contract, DataClass, Manifest, PluginTrait};

const TRAITS: [PluginTrait; 5] = [
    PluginTrait::HandlesPhi,
    PluginTrait::HandlesPii,
    PluginTrait::RequiresEncryption,
    PluginTrait::ExternalService,
    PluginTrait::AuditRequired,
];

const CLASSES: [DataClass; 3] = [DataClass::Internal, DataClass::Phi, DataClass::Pii];

fn example(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/examples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("example file")).expect("JSON")
}

fn user_management() -> Manifest {
    Manifest::builder("user-management", "User Management Plugin", "1.0.0")
        .description("Manages user profiles and extended attributes")
        .contract(Contract::IdentityPlugin)
        .traits([PluginTrait::HandlesPii, PluginTrait::AuditRequired])
        .endpoint("health", "/health")
        .endpoint("user_info", "/api/users/{id}")
        .authentication_required(true)
        .data_classification([DataClass::Pii, DataClass::Internal])
        .hipaa_controls(["164.312(a)", "164.312(d)"])
        .audit_level(AuditLevel::Detailed)
        .build()
        .expect("the seed's manifest is valid")
}

#[test]
fn the_seed_manifest_serialises_to_the_example_file() {
    let built = serde_json::to_value(user_management()).unwrap();
    assert_eq!(built, example("user-management.json"));
    let validator = ManifestValidator::new().unwrap();
    validator.validate(&built).expect("the core accepts it");
    // And the example parses into the typed manifest.
    let parsed: Manifest = serde_json::from_value(example("user-management.json")).unwrap();
    assert_eq!(parsed, user_management());
}

#[test]
fn a_full_manifest_is_accepted() {
    let m = Manifest::builder("records-gateway", "Records gateway", "2.10.3")
        .description("Everything a manifest can say")
        .contract(Contract::CommunicationPlugin)
        .contract(Contract::StoragePlugin)
        .contract(Contract::IdentityPlugin)
        .traits(TRAITS)
        .dependency("user-management")
        .allowed_domain("api.example.com")
        .allowed_domain("*.records.example.org")
        .subscriptions(["patient.*", "*.updated", "billing.invoice.paid", "*"])
        .endpoint("health", "/health")
        .authentication_required(true)
        .data_classification([
            DataClass::Public,
            DataClass::Internal,
            DataClass::Confidential,
            DataClass::Phi,
            DataClass::Pii,
        ])
        .hipaa_controls(["164.312(a)", "164.312(b)", "164.312(e)"])
        .audit_level(AuditLevel::Complete)
        .build()
        .unwrap();
    let v = serde_json::to_value(&m).unwrap();
    let accepted = ManifestValidator::new().unwrap().validate(&v).unwrap();
    assert_eq!(
        accepted.raw["subscriptions"],
        serde_json::json!(["patient.*", "*.updated", "billing.invoice.paid", "*"])
    );
    assert_eq!(serde_json::from_value::<Manifest>(v).unwrap(), m);
    let minimal =
        serde_json::to_value(Manifest::builder("m", "M", "0.0.1").build().unwrap()).unwrap();
    ManifestValidator::new()
        .unwrap()
        .validate(&minimal)
        .unwrap();
}

fn codes_of_domain(v: &Value, validator: &ManifestValidator) -> BTreeSet<(String, String)> {
    match validator.validate(v) {
        Ok(_) => BTreeSet::new(),
        Err(violations) => violations.into_iter().map(|v| (v.path, v.code)).collect(),
    }
}

/// Every combination of traits, classes, authentication, audit level, HIPAA controls
/// and allowed domains: the SDK's check and the core's validator find the same
/// violations (path and code), and whatever the SDK builds the core accepts.
#[test]
fn sdk_check_agrees_with_the_core_on_every_rule_combination() {
    let validator = ManifestValidator::new().unwrap();
    let mut accepted = 0;
    let mut checked = 0;
    for trait_bits in 0u32..(1 << TRAITS.len()) {
        for class_bits in 0u32..(1 << CLASSES.len()) {
            for auth in [false, true] {
                for level in [AuditLevel::Basic, AuditLevel::Detailed] {
                    for controls in [false, true] {
                        for domains in [false, true] {
                            let traits = TRAITS
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| trait_bits & (1 << i) != 0)
                                .map(|(_, t)| *t);
                            let classes = CLASSES
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| class_bits & (1 << i) != 0)
                                .map(|(_, c)| *c);
                            let mut b = Manifest::builder("combo", "Combo", "1.2.3")
                                .traits(traits)
                                .data_classification(classes)
                                .authentication_required(auth)
                                .audit_level(level);
                            if controls {
                                b = b.hipaa_controls(["164.312(a)"]);
                            }
                            if domains {
                                b = b.allowed_domain("api.example.com");
                            }
                            let sdk = match b.clone().build() {
                                Ok(m) => {
                                    let v = serde_json::to_value(&m).unwrap();
                                    assert!(
                                        validator.validate(&v).is_ok(),
                                        "the SDK built a manifest the core refuses: {v}"
                                    );
                                    accepted += 1;
                                    BTreeSet::new()
                                }
                                Err(e) => {
                                    e.violations.into_iter().map(|v| (v.path, v.code)).collect()
                                }
                            };
                            // Serialise the unchecked manifest to compare the verdicts.
                            let raw = serde_json::to_value(b.into_unchecked()).unwrap();
                            assert_eq!(sdk, codes_of_domain(&raw, &validator), "{raw}");
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 32 * 8 * 2 * 2 * 2 * 2);
    assert!(accepted > 50, "only {accepted} combinations were valid");
}

/// The SDK's HIPAA citation check says what the core's schema says, one control at a
/// time, including the near misses.
#[test]
fn hipaa_citation_checks_match_the_core() {
    let validator = ManifestValidator::new().unwrap();
    for control in [
        "164.312",
        "164.312(b)",
        "164.312(a)(2)(iv)",
        "164.308(a)(1)(ii)(d)",
        "",
        " ",
        "HIPAA",
        "164.31",
        "164.3120",
        "164.312 ",
        " 164.312",
        "164.312(B)",
        "164.312()",
        "164.312(b",
        "164.312(b))",
        "164.312b",
        "165.312(b)",
        "164.3é2",
        "164.31२",
        "164.312(é)",
        "164.312((b))",
        "164.312(b)(",
        "164.abc",
        "164.",
    ] {
        let b = Manifest::builder("ok", "Ok", "1.0.0").hipaa_controls([control]);
        let sdk: BTreeSet<(String, String)> = match b.clone().build() {
            Ok(_) => BTreeSet::new(),
            Err(e) => e.violations.into_iter().map(|v| (v.path, v.code)).collect(),
        };
        let raw = serde_json::to_value(b.into_unchecked()).unwrap();
        assert_eq!(sdk, codes_of_domain(&raw, &validator), "{control:?}");
    }
}

#[test]
fn shape_violations_match_the_core() {
    let validator = ManifestValidator::new().unwrap();
    let cases = [
        Manifest::builder("Bad_Id", "Bad", "1.0.0"),
        Manifest::builder("ok", "", "1.0.0"),
        Manifest::builder("ok", "Ok", "1.0"),
        Manifest::builder("ok", "Ok", "v1.0.0"),
        Manifest::builder("register", "Reserved", "1.0.0"),
        Manifest::builder("ok", "Ok", "1.0.0").dependency("Not An Id"),
        Manifest::builder("ok", "Ok", "1.0.0").dependency("ok"),
        Manifest::builder("ok", "Ok", "1.0.0").endpoint("x/y", "relative"),
        Manifest::builder("x".repeat(64), "Long", "1.0.0"),
        Manifest::builder("ok", "n".repeat(129), "1.0.0"),
        Manifest::builder("ok", "Ok", "1.0.0").description("d".repeat(1025)),
        Manifest::builder("ok", "Ok", "1.0.0").hipaa_controls(["", " ", "HIPAA", "164.312(B)"]),
        Manifest::builder("ok", "Ok", "1.0.0").hipaa_controls(["164.312(b)", "164.31"]),
        Manifest::builder("ok", "Ok", "1.0.0")
            .hipaa_controls(["164.312(b)(".to_owned() + &"x".repeat(60) + ")"]),
        Manifest::builder("ok", "Ok", "1.0.0")
            .traits([
                PluginTrait::HandlesPhi,
                PluginTrait::RequiresEncryption,
                PluginTrait::AuditRequired,
            ])
            .data_classification([DataClass::Phi])
            .authentication_required(true)
            .audit_level(AuditLevel::Complete)
            .hipaa_controls(["164.3120", "164.312b"]),
    ];
    for b in cases {
        let sdk: BTreeSet<(String, String)> = match b.clone().build() {
            Ok(_) => BTreeSet::new(),
            Err(e) => e.violations.into_iter().map(|v| (v.path, v.code)).collect(),
        };
        let raw = serde_json::to_value(b.into_unchecked()).unwrap();
        assert!(!sdk.is_empty(), "the SDK accepted {raw}");
        assert_eq!(sdk, codes_of_domain(&raw, &validator), "{raw}");
    }
}

fn verdicts(m: Manifest, validator: &ManifestValidator) -> (BTreeSet<(String, String)>, Value) {
    let sdk: BTreeSet<(String, String)> = match m.check() {
        Ok(()) => BTreeSet::new(),
        Err(e) => e.violations.into_iter().map(|v| (v.path, v.code)).collect(),
    };
    let raw = serde_json::to_value(&m).unwrap();
    assert_eq!(sdk, codes_of_domain(&raw, validator), "{raw}");
    (sdk, raw)
}

/// Subscription patterns, one at a time and in pairs: the SDK's verdict equals the
/// core's (path and code), valid ones are accepted by both, invalid ones refused by both.
#[test]
fn subscription_checks_agree_with_the_core() {
    let validator = ManifestValidator::new().unwrap();
    let long_ok = "a".repeat(255);
    let long_bad = "a".repeat(256);
    let long_wild = format!("{}.*", "b".repeat(253));
    let long_unicode = "ü".repeat(200); // 400 bytes, 200 characters
    let valid = [
        "patient.updated",
        "patient.*",
        "*.updated",
        "*",
        "*.*.*",
        "a-b_c.0.x",
        "NotificationSent",
        "Patient.updated",
        "patient.Updated",
        long_ok.as_str(),
        long_wild.as_str(),
    ];
    let invalid = [
        "",
        "Patient updated",
        "patient.",
        ".patient",
        "patient..updated",
        "**",
        "patient.*x",
        "a b",
        "ü",
        "patient.#",
        long_bad.as_str(),
        long_unicode.as_str(),
    ];
    for (i, a) in valid.iter().chain(&invalid).enumerate() {
        for b in valid.iter().chain(&invalid).skip(i) {
            let mut m = Manifest::builder("subs", "Subs", "1.0.0").into_unchecked();
            // Pushed directly: the builder would drop the duplicate of `a` and `a`.
            m.subscriptions = vec![(*a).to_owned(), (*b).to_owned()];
            let (sdk, raw) = verdicts(m, &validator);
            let expect_ok = valid.contains(a) && valid.contains(b) && a != b;
            assert_eq!(sdk.is_empty(), expect_ok, "{raw}: {sdk:?}");
        }
    }
    // Each invalid one alone names its own index.
    for bad in invalid {
        let m = Manifest::builder("subs", "Subs", "1.0.0")
            .subscriptions([bad])
            .into_unchecked();
        let (sdk, raw) = verdicts(m, &validator);
        assert!(
            sdk.iter().all(|(path, _)| path == "/subscriptions/0"),
            "{raw}: {sdk:?}"
        );
        assert!(!sdk.is_empty(), "{raw}");
    }
    // At most 64 of them, unique.
    let many: Vec<String> = (0..65).map(|i| format!("e.n{i}")).collect();
    let m = Manifest::builder("subs", "Subs", "1.0.0")
        .subscriptions(many.clone())
        .into_unchecked();
    let (sdk, _) = verdicts(m, &validator);
    assert_eq!(
        sdk,
        BTreeSet::from([("/subscriptions".to_owned(), "max_items".to_owned())])
    );
    let ok = Manifest::builder("subs", "Subs", "1.0.0")
        .subscriptions(many[..64].iter().cloned())
        .subscriptions(["e.n0"]) // the builder keeps items unique
        .build()
        .expect("64 unique subscriptions are fine");
    assert_eq!(ok.subscriptions.len(), 64);
    assert!(verdicts(ok, &validator).0.is_empty());
    let mut dup = Manifest::builder("subs", "Subs", "1.0.0").into_unchecked();
    dup.subscriptions = vec!["a.b".into(), "a.b".into()];
    assert_eq!(
        verdicts(dup, &validator).0,
        BTreeSet::from([("/subscriptions".to_owned(), "unique_items".to_owned())])
    );
    // No subscriptions: no member at all (the seed example stays byte-for-byte).
    let none =
        serde_json::to_value(Manifest::builder("subs", "Subs", "1.0.0").build().unwrap()).unwrap();
    assert!(none.get("subscriptions").is_none(), "{none}");
}
