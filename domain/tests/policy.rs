//! The policy engine: each default rule, each combination case, the engine's own
//! checks, the policy file (including its error positions), sanitising, and property
//! tests (PHI never reaches a target without `handles_phi` unredacted; case and order
//! never matter; adding a target trait never turns an allow into a deny unless a
//! forbid rule names it; no input panics the loader).

use proptest::prelude::*;
use serde_json::{Value, json};
use vivified_domain::policy::{
    Action, CompiledFacts, DEFAULT_PHI_REDACTED_FIELDS, DEFAULT_POLICY_JSON, Decision, Effect,
    PluginFacts, Policy, PolicyErrorKind, Position, Rule, RuleEffect, TargetCondition, Untagged,
    codes, default_rules,
};
use vivified_domain::{ManifestValidator, policy};

// ---------------------------------------------------------------------------------
// Helpers

fn facts(traits: &[&str], classification: &[&str]) -> PluginFacts {
    PluginFacts {
        id: "p".to_owned(),
        traits: traits.iter().map(|s| (*s).to_owned()).collect(),
        data_classification: classification.iter().map(|s| (*s).to_owned()).collect(),
        enabled: true,
    }
}

/// A publisher that may publish every default data trait.
fn publisher() -> PluginFacts {
    facts(
        &[
            "handles_phi",
            "handles_pii",
            "requires_encryption",
            "audit_required",
        ],
        &["phi", "pii", "confidential", "internal", "public"],
    )
}

const PHI_TARGET: &[&str] = &["handles_phi", "requires_encryption", "audit_required"];

fn deliver(policy: &Policy, source: &PluginFacts, target: &PluginFacts, data: &[&str]) -> Decision {
    let source = source.compile(policy);
    let target = target.compile(policy);
    policy.decide(
        &source,
        Action::Deliver { target: &target },
        &policy.data_traits(data),
    )
}

fn deliver_default(target: &PluginFacts, data: &[&str]) -> Decision {
    deliver(&Policy::default(), &publisher(), target, data)
}

fn publish(policy: &Policy, source: &PluginFacts, data: &[&str]) -> Decision {
    policy.decide(
        &source.compile(policy),
        Action::Publish,
        &policy.data_traits(data),
    )
}

#[track_caller]
fn assert_decision(d: &Decision, effect: &str, rule: &str, reason: &str) {
    assert_eq!(
        (effect_name(d), &*d.rule, &*d.reason),
        (effect, rule, reason),
        "decision {d:?}"
    );
}

fn effect_name(d: &Decision) -> &'static str {
    match d.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Sanitize { .. } => "sanitize",
    }
}

fn fields(d: &Decision) -> Vec<&str> {
    d.sanitize_fields()
        .expect("a sanitize decision")
        .iter()
        .map(|p| p.as_str())
        .collect()
}

fn rule(id: &str, data: &[&str], target: TargetCondition, effect: RuleEffect) -> Rule {
    Rule {
        id: id.to_owned(),
        description: None,
        data_traits: data.iter().map(|s| (*s).to_owned()).collect(),
        target,
        effect,
        reason: format!("{}_reason", id.replace(['.', '-'], "_")),
        otherwise_deny: None,
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------
// Default rules, one by one

#[test]
fn phi_reaches_a_target_that_handles_phi_encrypts_and_is_audited() {
    let d = deliver_default(&facts(PHI_TARGET, &["phi"]), &["phi"]);
    assert_decision(&d, "allow", "phi.qualified-target", "phi_target_qualified");
}

#[test]
fn phi_is_denied_to_a_target_missing_any_of_the_three_traits() {
    for missing in PHI_TARGET {
        let traits: Vec<&str> = PHI_TARGET
            .iter()
            .copied()
            .filter(|t| t != missing)
            .collect();
        let d = deliver_default(&facts(&traits, &["phi"]), &["phi"]);
        assert_decision(
            &d,
            "deny",
            "phi.qualified-target",
            "phi_target_not_qualified",
        );
    }
    let d = deliver_default(&facts(&[], &[]), &["phi"]);
    assert_decision(
        &d,
        "deny",
        "phi.qualified-target",
        "phi_target_not_qualified",
    );
}

#[test]
fn an_external_service_receives_phi_only_sanitised() {
    let mut traits = PHI_TARGET.to_vec();
    traits.push("external_service");
    let d = deliver_default(&facts(&traits, &["phi"]), &["phi"]);
    assert_decision(
        &d,
        "sanitize",
        "phi.external-service-redacted",
        "phi_redacted_for_external_service",
    );
    assert_eq!(fields(&d), DEFAULT_PHI_REDACTED_FIELDS);
}

#[test]
fn an_external_service_that_does_not_handle_phi_is_denied_not_sanitised() {
    // Deny (phi.qualified-target) beats Sanitize (phi.external-service-redacted).
    let d = deliver_default(&facts(&["external_service"], &[]), &["phi"]);
    assert_decision(
        &d,
        "deny",
        "phi.qualified-target",
        "phi_target_not_qualified",
    );
}

#[test]
fn pii_reaches_only_a_target_that_handles_pii() {
    let d = deliver_default(&facts(&["handles_pii"], &[]), &["pii"]);
    assert_decision(&d, "allow", "pii.handles-pii", "pii_target_qualified");
    let d = deliver_default(
        &facts(&["handles_phi", "audit_required"], &["pii"]),
        &["pii"],
    );
    assert_decision(&d, "deny", "pii.handles-pii", "pii_target_not_qualified");
}

#[test]
fn confidential_reaches_only_a_target_classified_for_it() {
    let d = deliver_default(
        &facts(&[], &["internal", "confidential"]),
        &["confidential"],
    );
    assert_decision(
        &d,
        "allow",
        "confidential.classified-target",
        "confidential_target_classified",
    );
    let d = deliver_default(&facts(PHI_TARGET, &["phi", "internal"]), &["confidential"]);
    assert_decision(
        &d,
        "deny",
        "confidential.classified-target",
        "confidential_target_not_classified",
    );
}

#[test]
fn internal_and_public_data_reach_any_enabled_plugin() {
    let bare = facts(&[], &[]);
    let d = deliver_default(&bare, &["internal"]);
    assert_decision(&d, "allow", "internal.enabled-plugins", "internal_data");
    let d = deliver_default(&bare, &["public"]);
    assert_decision(&d, "allow", "public.anywhere", "public_data");
    let external = facts(&["external_service"], &["public"]);
    let d = deliver_default(&external, &["public", "internal"]);
    assert_decision(&d, "allow", "internal.enabled-plugins", "internal_data");
}

#[test]
fn unknown_data_traits_are_denied_even_next_to_allowed_ones() {
    let mut source = publisher();
    // A classification no rule names does not make the trait known.
    source.data_classification.push("financial".to_owned());
    let policy = Policy::default();
    let target = facts(PHI_TARGET, &["phi"]);
    for data in [
        &["financial"][..],
        &["public", "financial"],
        &[""],
        &["phi", "ph1"],
    ] {
        let d = deliver(&policy, &source, &target, data);
        assert_decision(
            &d,
            "deny",
            codes::RULE_UNKNOWN_DATA_TRAIT,
            codes::UNKNOWN_DATA_TRAIT,
        );
    }
}

/// A PHI publisher's untagged event is PHI: a target without `handles_phi` is denied,
/// an external service gets it redacted, a qualified target gets it whole — as if it
/// had been tagged `phi`.
#[test]
fn untagged_events_carry_the_publishers_classification() {
    let policy = Policy::default();
    let ehr = facts(PHI_TARGET, &["phi"]);
    let mailer = facts(
        &[
            "external_service",
            "handles_phi",
            "requires_encryption",
            "audit_required",
        ],
        &["phi"],
    );
    let plain = facts(&[], &["internal"]);
    for (target, tagged) in [(&plain, "deny"), (&mailer, "sanitize"), (&ehr, "allow")] {
        let untagged = deliver(&policy, &ehr, target, &[]);
        assert_eq!(untagged, deliver(&policy, &ehr, target, &["phi"]));
        assert_eq!(effect_name(&untagged), tagged, "{untagged:?}");
    }
    assert_decision(
        &deliver(&policy, &ehr, &plain, &[]),
        "deny",
        "phi.qualified-target",
        "phi_target_not_qualified",
    );
    // All of it: `phi` + `internal` needs a target qualified for both.
    let both = facts(PHI_TARGET, &["phi", "internal"]);
    assert_eq!(
        deliver(&policy, &both, &plain, &[]),
        deliver(&policy, &both, &plain, &["phi", "internal"])
    );
    // A public-only publisher's untagged events go anywhere, as before.
    let public = facts(&[], &["public"]);
    assert_decision(
        &deliver(&policy, &public, &plain, &[]),
        "allow",
        "public.anywhere",
        "public_data",
    );
    assert!(publish(&policy, &ehr, &[]).is_allow());
    assert_eq!(policy.untagged(), Untagged::PublisherClassification);
    assert_eq!(
        policy.untagged_traits(&facts(&[], &["PHI", "internal"])),
        ["phi", "internal"]
    );
}

/// A publisher without a data classification has nothing its untagged events could
/// be decided as: refused at publication and at delivery.
#[test]
fn an_unclassified_publishers_untagged_events_are_refused() {
    let policy = Policy::default();
    let none = facts(&[], &[]);
    for d in [
        publish(&policy, &none, &[]),
        deliver(&policy, &none, &facts(PHI_TARGET, &["phi"]), &[]),
    ] {
        assert_decision(
            &d,
            "deny",
            codes::RULE_UNTAGGED,
            codes::UNTAGGED_UNCLASSIFIED,
        );
    }
    // A classification no rule names is an unknown data trait, as when tagged.
    let custom = Policy::from_json_str(&file_with(
        r#"{"id": "x", "data_traits": ["internal"], "effect": "allow", "reason": "ok"}"#,
    ))
    .unwrap();
    let source = facts(&[], &["internal", "phi"]);
    assert_decision(
        &publish(&custom, &source, &[]),
        "deny",
        codes::RULE_UNKNOWN_DATA_TRAIT,
        codes::UNKNOWN_DATA_TRAIT,
    );
}

/// A policy file chooses: `deny` refuses untagged events, `public` decides them as
/// `public` (and needs a rule for it), an unknown value is a structure error.
#[test]
fn a_policy_file_may_choose_what_untagged_events_carry() {
    let with = |untagged: &str| {
        DEFAULT_POLICY_JSON.replacen(
            "\"version\": 1,",
            &format!("\"version\": 1, \"untagged\": \"{untagged}\","),
            1,
        )
    };
    let ehr = facts(PHI_TARGET, &["phi"]);
    let plain = facts(&[], &["internal"]);

    let deny = Policy::from_json_str(&with("deny")).unwrap();
    assert_eq!(deny.untagged(), Untagged::Deny);
    assert!(deny.untagged_traits(&ehr).is_empty());
    for d in [publish(&deny, &ehr, &[]), deliver(&deny, &ehr, &ehr, &[])] {
        assert_decision(&d, "deny", codes::RULE_UNTAGGED, codes::UNTAGGED_DENIED);
    }
    assert!(deliver(&deny, &ehr, &ehr, &["phi"]).is_allow());

    let public = Policy::from_json_str(&with("public")).unwrap();
    assert_eq!(public.untagged(), Untagged::Public);
    assert_eq!(public.untagged_traits(&ehr), ["public"]);
    assert!(publish(&public, &ehr, &[]).is_allow());
    assert_decision(
        &deliver(&public, &ehr, &plain, &[]),
        "allow",
        "public.anywhere",
        "public_data",
    );

    let explicit = Policy::from_json_str(&with("publisher_classification")).unwrap();
    assert_eq!(explicit.untagged(), Untagged::PublisherClassification);
    assert!(deliver(&explicit, &ehr, &plain, &[]).is_deny());

    let no_public_rule =
        file_with(r#"{"id": "x", "data_traits": ["internal"], "effect": "allow", "reason": "ok"}"#)
            .replacen(
                "\"version\": 1,",
                "\"version\": 1, \"untagged\": \"public\",",
                1,
            );
    let e = load_error(&no_public_rule);
    assert_eq!(e.kind, PolicyErrorKind::UntaggedPublicWithoutRule, "{e}");
    assert_eq!(e.path, "/untagged");
    assert_eq!(e.position.map(|p| p.line), Some(2), "{e}");

    let e = load_error(&with("everyone"));
    assert_eq!(e.kind, PolicyErrorKind::Structure, "{e}");
    assert!(e.to_string().contains("publisher_classification"), "{e}");
}

#[test]
fn a_disabled_source_or_target_is_denied_whatever_the_data() {
    let policy = Policy::default();
    let mut off_source = publisher();
    off_source.enabled = false;
    let mut off_target = facts(&[], &["public"]);
    off_target.enabled = false;
    for data in [&[][..], &["public"]] {
        let d = deliver(&policy, &off_source, &facts(&[], &[]), data);
        assert_decision(&d, "deny", codes::RULE_ENABLED, codes::SOURCE_DISABLED);
        let d = deliver(&policy, &publisher(), &off_target, data);
        assert_decision(&d, "deny", codes::RULE_ENABLED, codes::TARGET_DISABLED);
        // Both disabled: the source is checked first.
        let d = deliver(&policy, &off_source, &off_target, data);
        assert_decision(&d, "deny", codes::RULE_ENABLED, codes::SOURCE_DISABLED);
        let d = publish(&policy, &off_source, data);
        assert_decision(&d, "deny", codes::RULE_ENABLED, codes::SOURCE_DISABLED);
    }
}

#[test]
fn a_source_publishes_only_within_its_data_classification() {
    let policy = Policy::default();
    let source = facts(&["handles_pii"], &["pii", "Internal"]);
    let d = publish(&policy, &source, &["PII", "internal"]);
    assert_decision(
        &d,
        "allow",
        codes::RULE_PUBLISH,
        codes::WITHIN_SOURCE_CLASSIFICATION,
    );
    let d = publish(&policy, &source, &[]);
    assert_decision(
        &d,
        "allow",
        codes::RULE_PUBLISH,
        codes::WITHIN_SOURCE_CLASSIFICATION,
    );
    for data in [&["phi"][..], &["pii", "public"], &["confidential"]] {
        let d = publish(&policy, &source, data);
        assert_decision(
            &d,
            "deny",
            codes::RULE_SOURCE_CLASSIFICATION,
            codes::OUTSIDE_SOURCE_CLASSIFICATION,
        );
    }
    let d = publish(&policy, &source, &["pii", "no-such-trait"]);
    assert_decision(
        &d,
        "deny",
        codes::RULE_UNKNOWN_DATA_TRAIT,
        codes::UNKNOWN_DATA_TRAIT,
    );
    // Delivery checks the source again (its manifest may have narrowed since).
    let d = deliver(&policy, &source, &facts(PHI_TARGET, &["phi"]), &["phi"]);
    assert_decision(
        &d,
        "deny",
        codes::RULE_SOURCE_CLASSIFICATION,
        codes::OUTSIDE_SOURCE_CLASSIFICATION,
    );
}

// ---------------------------------------------------------------------------------
// Combination

#[test]
fn every_data_trait_is_checked_a_phi_allow_does_not_skip_pii() {
    let d = deliver_default(&facts(PHI_TARGET, &["phi"]), &["phi", "pii"]);
    assert_decision(&d, "deny", "pii.handles-pii", "pii_target_not_qualified");
    let d = deliver_default(&facts(PHI_TARGET, &["phi"]), &["phi", "confidential"]);
    assert_decision(
        &d,
        "deny",
        "confidential.classified-target",
        "confidential_target_not_classified",
    );
    let mut all = PHI_TARGET.to_vec();
    all.push("handles_pii");
    let d = deliver_default(&facts(&all, &["phi", "pii"]), &["pii", "phi"]);
    // Both allowed: the first allowing rule in policy order is reported.
    assert_decision(&d, "allow", "phi.qualified-target", "phi_target_qualified");
}

#[test]
fn deny_beats_sanitize_beats_allow() {
    let mut external = PHI_TARGET.to_vec();
    external.push("external_service");
    let d = deliver_default(&facts(&external, &["phi"]), &["internal", "phi", "public"]);
    assert_decision(
        &d,
        "sanitize",
        "phi.external-service-redacted",
        "phi_redacted_for_external_service",
    );
    let d = deliver_default(&facts(&external, &["phi"]), &["phi", "pii"]);
    assert_decision(&d, "deny", "pii.handles-pii", "pii_target_not_qualified");
}

#[test]
fn the_reported_rule_is_the_first_that_decided_in_policy_order() {
    let policy = Policy::new(vec![
        rule(
            "b.deny",
            &["b"],
            TargetCondition::default(),
            RuleEffect::Deny,
        ),
        rule(
            "a.allow",
            &["a"],
            TargetCondition::default(),
            RuleEffect::Allow,
        ),
        rule(
            "a.deny",
            &["a"],
            TargetCondition::default(),
            RuleEffect::Deny,
        ),
    ])
    .expect("valid");
    let source = facts(&[], &["a", "b"]);
    let target = facts(&[], &[]);
    let d = deliver(&policy, &source, &target, &["a", "b"]);
    assert_decision(&d, "deny", "b.deny", "b_deny_reason");
    let d = deliver(&policy, &source, &target, &["a"]);
    assert_decision(&d, "deny", "a.deny", "a_deny_reason");
}

#[test]
fn sanitize_fields_are_the_union_reported_under_the_first_sanitize_rule() {
    let sanitize = |f: &[&str]| RuleEffect::Sanitize { fields: names(f) };
    let policy = Policy::new(vec![
        rule(
            "a.allow",
            &["a"],
            TargetCondition::default(),
            RuleEffect::Allow,
        ),
        rule(
            "a.strip",
            &["a"],
            TargetCondition::default(),
            sanitize(&["/x", "/y"]),
        ),
        rule(
            "b.strip",
            &["b"],
            TargetCondition::default(),
            sanitize(&["/y", "/z"]),
        ),
    ])
    .expect("valid");
    let source = facts(&[], &["a", "b"]);
    let target = facts(&[], &[]);
    let d = deliver(&policy, &source, &target, &["b", "a"]);
    assert_decision(&d, "sanitize", "a.strip", "a_strip_reason");
    assert_eq!(fields(&d), ["/x", "/y", "/z"]);
    let d = deliver(&policy, &source, &target, &["b"]);
    assert_decision(&d, "sanitize", "b.strip", "b_strip_reason");
    assert_eq!(fields(&d), ["/y", "/z"]);
}

#[test]
fn tagged_data_that_no_rule_allows_is_denied_fail_closed() {
    let handles_x = TargetCondition {
        traits: names(&["handles_x"]),
        ..TargetCondition::default()
    };
    let policy = Policy::new(vec![
        // No otherwise_deny: when the condition fails the rule has no opinion.
        rule("x.handlers", &["x"], handles_x, RuleEffect::Allow),
        rule(
            "y.open",
            &["y"],
            TargetCondition::default(),
            RuleEffect::Allow,
        ),
        // Named, but never allows: a deny that does not apply leaves `z` uncovered.
        rule(
            "z.never",
            &["z"],
            TargetCondition {
                traits: names(&["t"]),
                ..TargetCondition::default()
            },
            RuleEffect::Deny,
        ),
    ])
    .expect("valid");
    let source = facts(&[], &["x", "y", "z"]);
    let d = deliver(&policy, &source, &facts(&[], &[]), &["x"]);
    assert_decision(&d, "deny", codes::RULE_FAIL_CLOSED, codes::NO_ALLOWING_RULE);
    let d = deliver(&policy, &source, &facts(&[], &[]), &["y", "x"]);
    assert_decision(&d, "deny", codes::RULE_FAIL_CLOSED, codes::NO_ALLOWING_RULE);
    let d = deliver(&policy, &source, &facts(&["handles_x"], &[]), &["y", "x"]);
    assert_decision(&d, "allow", "x.handlers", "x_handlers_reason");
    let d = deliver(&policy, &source, &facts(&[], &[]), &["z"]);
    assert_decision(&d, "deny", codes::RULE_FAIL_CLOSED, codes::NO_ALLOWING_RULE);
    let d = deliver(&policy, &source, &facts(&["t"], &[]), &["z"]);
    assert_decision(&d, "deny", "z.never", "z_never_reason");
}

#[test]
fn forbid_traits_keep_a_rule_from_applying() {
    let mut r = rule(
        "x.internal-only",
        &["x"],
        TargetCondition {
            forbid_traits: names(&["external_service"]),
            ..TargetCondition::default()
        },
        RuleEffect::Allow,
    );
    r.otherwise_deny = Some("x_external".to_owned());
    let policy = Policy::new(vec![r]).expect("valid");
    let source = facts(&[], &["x"]);
    let d = deliver(&policy, &source, &facts(&["audit_required"], &[]), &["x"]);
    assert_decision(&d, "allow", "x.internal-only", "x_internal_only_reason");
    let d = deliver(&policy, &source, &facts(&["EXTERNAL_SERVICE"], &[]), &["x"]);
    assert_decision(&d, "deny", "x.internal-only", "x_external");
}

#[test]
fn names_compare_case_insensitively_everywhere() {
    let policy = Policy::default();
    let source = facts(&[], &["PHI", "Pii"]);
    let target = facts(
        &[
            "Handles_PHI",
            "REQUIRES_ENCRYPTION",
            "audit_Required",
            "HANDLES_PII",
        ],
        &[],
    );
    let d = deliver(&policy, &source, &target, &["pHi", "PII", "phi"]);
    assert_decision(&d, "allow", "phi.qualified-target", "phi_target_qualified");
    // Non-ASCII look-alikes are not the same name: unknown, denied.
    let d = deliver(&policy, &source, &target, &["PH\u{130}"]);
    assert_decision(
        &d,
        "deny",
        codes::RULE_UNKNOWN_DATA_TRAIT,
        codes::UNKNOWN_DATA_TRAIT,
    );
}

#[test]
fn facts_compiled_for_another_policy_are_denied_not_misread() {
    let old = Policy::default();
    let new = Policy::default();
    assert_ne!(old.generation(), new.generation());
    let source = publisher();
    let target = facts(PHI_TARGET, &["phi"]);
    let (s_old, t_old) = (source.compile(&old), target.compile(&old));
    let (s_new, t_new) = (new.compile_facts(&source), new.compile_facts(&target));
    let data_new = new.data_traits(["phi"]);
    let stale = [
        new.decide(&s_old, Action::Deliver { target: &t_new }, &data_new),
        new.decide(&s_new, Action::Deliver { target: &t_old }, &data_new),
        new.decide(
            &s_new,
            Action::Deliver { target: &t_new },
            &old.data_traits(["phi"]),
        ),
        new.decide(&s_old, Action::Publish, &data_new),
    ];
    for d in &stale {
        assert_decision(
            d,
            "deny",
            codes::RULE_STALE_FACTS,
            codes::FACTS_FROM_ANOTHER_POLICY,
        );
    }
    let d = new.decide(&s_new, Action::Deliver { target: &t_new }, &data_new);
    assert!(d.is_allow());
    // A clone shares the compiled policy, so facts stay valid.
    let clone = new.clone();
    assert!(
        clone
            .decide(&s_new, Action::Deliver { target: &t_new }, &data_new)
            .is_allow()
    );
}

#[test]
fn decisions_serialise_for_the_audit_log() {
    let d = deliver_default(&facts(&[], &[]), &["pii"]);
    assert_eq!(
        serde_json::to_value(&d).expect("serialisable"),
        json!({"effect": "deny", "rule": "pii.handles-pii", "reason": "pii_target_not_qualified"})
    );
    let mut external = PHI_TARGET.to_vec();
    external.push("external_service");
    let d = deliver_default(&facts(&external, &["phi"]), &["phi"]);
    let v = serde_json::to_value(&d).expect("serialisable");
    assert_eq!(v["effect"], "sanitize");
    assert_eq!(v["fields"][0], "/phi");
    assert_eq!(Action::Publish.as_str(), "publish");
}

#[test]
fn facts_come_from_manifests_and_records() {
    let validator = ManifestValidator::new().expect("schema");
    let raw: Value =
        serde_json::from_str(include_str!("../../schemas/examples/ehr-connector.json"))
            .expect("json");
    let manifest = validator.validate(&raw).expect("valid manifest");
    let from_manifest = PluginFacts::from_manifest(&manifest, true);
    assert_eq!(from_manifest.id, "ehr-connector");
    assert_eq!(
        from_manifest.traits,
        [
            "handles_phi",
            "handles_pii",
            "requires_encryption",
            "audit_required"
        ]
    );
    assert_eq!(
        from_manifest.data_classification,
        ["phi", "pii", "confidential"]
    );

    let mut record = vivified_conformance::store::record("ehr-connector", "jti-1");
    record.manifest = vivified_ports::StoredManifest::from_value(&raw);
    record.enabled = false;
    let mut expected = from_manifest.clone();
    expected.enabled = false;
    assert_eq!(PluginFacts::from_record(&record), expected);

    // The ehr connector may publish PHI, not public data (outside its classification).
    let policy = Policy::default();
    assert!(publish(&policy, &from_manifest, &["phi", "pii"]).is_allow());
    assert!(publish(&policy, &from_manifest, &["public"]).is_deny());
}

// ---------------------------------------------------------------------------------
// Sanitize

#[test]
fn sanitised_bytes_no_longer_contain_the_removed_values() {
    let mut external = PHI_TARGET.to_vec();
    external.push("external_service");
    let d = deliver_default(&facts(&external, &["phi"]), &["phi", "internal"]);
    let mut payload = json!({
        "appointment_id": "apt-5521",
        "phi": {"mrn": "MRN-77341", "diagnosis_code": "E11.9"},
        "patient": {"name": "Jane Roe", "email": "jane.roe@example.org"},
        "date_of_birth": "1971-02-03",
        "ssn": "078-05-1120",
        "clinic": "North",
    });
    let before = serde_json::to_vec(&payload).expect("json");
    assert!(String::from_utf8_lossy(&before).contains("MRN-77341"));
    assert_eq!(d.apply(&mut payload), 4);
    let bytes = serde_json::to_vec(&payload).expect("json");
    let text = String::from_utf8(bytes).expect("utf-8");
    for secret in [
        "MRN-77341",
        "E11.9",
        "Jane Roe",
        "jane.roe@example.org",
        "1971-02-03",
        "078-05-1120",
    ] {
        assert!(!text.contains(secret), "{secret} still in {text}");
    }
    assert_eq!(
        payload,
        json!({"appointment_id": "apt-5521", "clinic": "North"})
    );
    // Allow and Deny leave the payload alone.
    let allow = deliver_default(&facts(&[], &[]), &["public"]);
    assert_eq!(allow.apply(&mut payload), 0);
    assert_eq!(
        payload,
        json!({"appointment_id": "apt-5521", "clinic": "North"})
    );
}

// ---------------------------------------------------------------------------------
// The policy file

#[test]
fn the_shipped_default_file_is_exactly_the_built_in_rules() {
    let from_file = Policy::parse_rules(DEFAULT_POLICY_JSON).expect("the default file parses");
    assert_eq!(from_file, default_rules());
    let on_disk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/policy.default.json"
    ))
    .expect("readable");
    assert_eq!(on_disk, DEFAULT_POLICY_JSON);
    let policy = Policy::from_json_str(&on_disk).expect("compiles");
    assert_eq!(policy.rules(), default_rules().as_slice());
    assert_eq!(Policy::default().rules(), default_rules().as_slice());
}

#[test]
fn a_policy_file_replaces_the_default_rules() {
    let policy = Policy::from_json_slice(
        br#"{"version": 1, "rules": [
            {"id": "phi.nowhere", "data_traits": ["PHI"], "effect": "deny", "reason": "no_phi"},
            {"id": "public.anywhere", "data_traits": ["public"], "effect": "allow", "reason": "ok"}
        ]}"#,
    )
    .expect("valid");
    let target = facts(PHI_TARGET, &["phi", "pii"]);
    assert_decision(
        &deliver(&policy, &publisher(), &target, &["phi"]),
        "deny",
        "phi.nowhere",
        "no_phi",
    );
    // `pii` is no longer named by any rule.
    assert_decision(
        &deliver(&policy, &publisher(), &target, &["pii"]),
        "deny",
        codes::RULE_UNKNOWN_DATA_TRAIT,
        codes::UNKNOWN_DATA_TRAIT,
    );
}

/// A valid one-rule file with `rule` spliced in at line 3.
fn file_with(rule: &str) -> String {
    format!("{{\n  \"version\": 1,\n  \"rules\": [\n{rule}\n  ]\n}}\n")
}

#[track_caller]
fn load_error(text: &str) -> policy::PolicyError {
    Policy::from_json_str(text).expect_err("the file is refused")
}

#[test]
fn a_syntax_error_has_its_line_and_column() {
    let e = load_error("{\n  \"version\": 1,\n  \"rules\": [,]\n}");
    assert_eq!(e.kind, PolicyErrorKind::Syntax);
    assert_eq!(
        e.position,
        Some(Position {
            line: 3,
            column: 13
        })
    );
    let text = e.to_string();
    assert!(text.starts_with("line 3, column 13: "), "{text}");
    assert!(!text.contains("at line"), "{text}");
    let e = load_error("");
    assert_eq!(e.kind, PolicyErrorKind::Syntax);
    assert!(e.position.is_some());
}

#[test]
fn an_unknown_effect_names_the_rule_and_its_line() {
    let e = load_error(&file_with(
        "    {\"id\": \"a.one\", \"data_traits\": [\"public\"], \"effect\": \"allow\", \"reason\": \"r\"},\n    {\"id\": \"b.two\", \"data_traits\": [\"public\"],\n     \"effect\": \"alow\", \"reason\": \"r\"}",
    ));
    assert_eq!(e.kind, PolicyErrorKind::UnknownEffect);
    assert_eq!(e.rule.as_deref(), Some("`b.two`"));
    assert_eq!(e.path, "/rules/1/effect");
    assert_eq!(
        e.position,
        Some(Position {
            line: 6,
            column: 16
        })
    );
    let text = e.to_string();
    assert!(
        text.starts_with("line 6, column 16: rule `b.two` (/rules/1/effect): unknown effect"),
        "{text}"
    );
}

#[test]
fn an_invalid_json_pointer_names_the_rule_and_the_field() {
    let e = load_error(&file_with(
        "    {\"id\": \"s\", \"data_traits\": [\"phi\"], \"effect\": \"sanitize\",\n     \"fields\": [\"/ok\",\n                \"no-slash\"], \"reason\": \"r\"}",
    ));
    assert_eq!(e.kind, PolicyErrorKind::InvalidPointer);
    assert_eq!(e.path, "/rules/0/fields/1");
    assert_eq!(e.rule.as_deref(), Some("`s`"));
    assert_eq!(
        e.position,
        Some(Position {
            line: 6,
            column: 17
        })
    );
    let e = load_error(&file_with(
        "{\"id\": \"s\", \"data_traits\": [\"phi\"], \"effect\": \"sanitize\", \"fields\": [\"/a~2\"], \"reason\": \"r\"}",
    ));
    assert_eq!(e.kind, PolicyErrorKind::InvalidPointer);
    let e = load_error(&file_with(
        "{\"id\": \"s\", \"data_traits\": [\"phi\"], \"effect\": \"sanitize\", \"fields\": [\"\"], \"reason\": \"r\"}",
    ));
    assert_eq!(e.kind, PolicyErrorKind::InvalidPointer);
}

#[test]
fn a_duplicate_rule_id_is_reported_at_its_second_use() {
    let e = load_error(&file_with(
        "    {\"id\": \"same\", \"data_traits\": [\"public\"], \"effect\": \"allow\", \"reason\": \"r\"},\n    {\"id\": \"same\", \"data_traits\": [\"internal\"], \"effect\": \"allow\", \"reason\": \"r\"}",
    ));
    assert_eq!(e.kind, PolicyErrorKind::DuplicateRuleId);
    assert_eq!(e.path, "/rules/1/id");
    assert_eq!(
        e.position,
        Some(Position {
            line: 5,
            column: 12
        })
    );
    assert!(e.message.contains("rule #0"), "{e}");
}

#[test]
fn a_sanitize_rule_without_fields_is_refused() {
    // No `fields` member: reported at the rule.
    let e = load_error(&file_with(
        "    {\"id\": \"s\", \"data_traits\": [\"phi\"], \"effect\": \"sanitize\", \"reason\": \"r\"}",
    ));
    assert_eq!(e.kind, PolicyErrorKind::SanitizeWithoutFields);
    assert_eq!(e.rule.as_deref(), Some("`s`"));
    assert_eq!(e.position, Some(Position { line: 4, column: 5 }));
    // An empty list: reported at the list.
    let e = load_error(&file_with(
        "    {\"id\": \"s\", \"data_traits\": [\"phi\"], \"effect\": \"sanitize\", \"fields\": [], \"reason\": \"r\"}",
    ));
    assert_eq!(e.kind, PolicyErrorKind::SanitizeWithoutFields);
    let at = e.position.map(|p| (p.line, p.column));
    assert_eq!(at, Some((4, 73)));
    // And in code.
    let e = Policy::new(vec![rule(
        "s",
        &["phi"],
        TargetCondition::default(),
        RuleEffect::Sanitize { fields: vec![] },
    )])
    .expect_err("refused");
    assert_eq!(e.kind, PolicyErrorKind::SanitizeWithoutFields);
    assert_eq!(e.position, None);
    assert_eq!(
        e.to_string(),
        "rule `s` (/rules/0/fields): a sanitize rule names at least one field (a sanitize without fields would deny; write a deny rule) (sanitize_without_fields)"
    );
}

#[test]
fn the_other_semantic_errors_name_their_rule() {
    let cases: &[(&str, PolicyErrorKind, &str)] = &[
        (
            r#"{"id": "a", "data_traits": ["x"], "effect": "allow", "fields": ["/x"], "reason": "r"}"#,
            PolicyErrorKind::FieldsWithoutSanitize,
            "/rules/0/fields",
        ),
        (
            r#"{"id": "core.mine", "data_traits": ["x"], "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::InvalidRuleId,
            "/rules/0/id",
        ),
        (
            r#"{"id": "Upper", "data_traits": ["x"], "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::InvalidRuleId,
            "/rules/0/id",
        ),
        (
            r#"{"id": "a", "data_traits": [], "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::NoDataTraits,
            "/rules/0/data_traits",
        ),
        (
            r#"{"id": "a", "data_traits": ["x", "X"], "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::DuplicateName,
            "/rules/0/data_traits/1",
        ),
        (
            r#"{"id": "a", "data_traits": ["x y"], "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::InvalidName,
            "/rules/0/data_traits/0",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "target": {"traits": ["é"]}, "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::InvalidName,
            "/rules/0/target/traits/0",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "effect": "allow", "reason": "Not-A-Code"}"#,
            PolicyErrorKind::InvalidReason,
            "/rules/0/reason",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "effect": "deny", "target": {"traits": ["t"]}, "reason": "r", "otherwise_deny": "o"}"#,
            PolicyErrorKind::MisplacedOtherwiseDeny,
            "/rules/0/otherwise_deny",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "effect": "allow", "reason": "r", "otherwise_deny": "o"}"#,
            PolicyErrorKind::MisplacedOtherwiseDeny,
            "/rules/0/otherwise_deny",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "target": {"traits": ["t"], "otherwise_deny": "o"}, "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::Structure,
            "/rules/0",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "target": {"traits": ["t"], "forbid_traits": ["T"]}, "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::ContradictoryCondition,
            "/rules/0/target/forbid_traits/0",
        ),
        (
            r#"{"id": "a", "data_traits": "x", "effect": "allow", "reason": "r"}"#,
            PolicyErrorKind::Structure,
            "/rules/0",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "effect": "allow", "reason": "r", "extra": 1}"#,
            PolicyErrorKind::Structure,
            "/rules/0",
        ),
        (
            r#"{"id": "a", "data_traits": ["x"], "effect": "allow"}"#,
            PolicyErrorKind::Structure,
            "/rules/0",
        ),
    ];
    for (rule, kind, path) in cases {
        let e = load_error(&file_with(rule));
        assert_eq!((e.kind, e.path.as_str()), (*kind, *path), "{rule}: {e}");
        assert_eq!(e.position.map(|p| p.line), Some(4), "{rule}: {e}");
        assert!(e.rule.is_some(), "{rule}: {e}");
    }
}

#[test]
fn file_level_errors_have_positions_too() {
    let e = load_error("{\"version\": 2, \"rules\": []}");
    assert_eq!(e.kind, PolicyErrorKind::UnsupportedVersion);
    assert_eq!(
        e.position,
        Some(Position {
            line: 1,
            column: 13
        })
    );
    let e = load_error("{\"rules\": []}");
    assert_eq!(e.kind, PolicyErrorKind::Structure);
    assert!(e.message.contains("version"), "{e}");
    let e = load_error("{\"version\": 1, \"rules\": [], \"comment\": \"\"}");
    assert_eq!(e.kind, PolicyErrorKind::Structure);
    let e =
        Policy::from_json_slice(b"{\"version\": 1,\n \"rules\": [\xff]}").expect_err("not UTF-8");
    assert_eq!(e.kind, PolicyErrorKind::NotUtf8);
    assert_eq!(
        e.position,
        Some(Position {
            line: 2,
            column: 12
        })
    );
    // An empty rule list is valid: every tagged event is denied (unknown traits).
    let empty = Policy::from_json_str("{\"version\": 1, \"rules\": []}").expect("valid");
    assert_decision(
        &deliver(&empty, &publisher(), &facts(&[], &[]), &["public"]),
        "deny",
        codes::RULE_UNKNOWN_DATA_TRAIT,
        codes::UNKNOWN_DATA_TRAIT,
    );
}

#[test]
fn limits_are_errors_not_surprises() {
    let many: Vec<Rule> = (0..=policy::MAX_RULES)
        .map(|i| {
            rule(
                &format!("r{i}"),
                &["x"],
                TargetCondition::default(),
                RuleEffect::Allow,
            )
        })
        .collect();
    assert_eq!(
        Policy::new(many).expect_err("too many").kind,
        PolicyErrorKind::TooMany
    );
    let wide: Vec<Rule> = (0..=policy::MAX_NAMES)
        .map(|i| {
            rule(
                &format!("r{i}"),
                &[&format!("d{i}")],
                TargetCondition::default(),
                RuleEffect::Allow,
            )
        })
        .collect();
    let e = Policy::new(wide).expect_err("too many names");
    assert_eq!(e.kind, PolicyErrorKind::TooMany);
    assert_eq!(
        e.rule.as_deref(),
        Some(format!("`r{}`", policy::MAX_NAMES).as_str())
    );
}

// ---------------------------------------------------------------------------------
// Properties

const TRAITS: &[&str] = &[
    "handles_phi",
    "handles_pii",
    "requires_encryption",
    "external_service",
    "audit_required",
    "custom_trait",
];
const CLASSES: &[&str] = &[
    "phi",
    "pii",
    "confidential",
    "internal",
    "public",
    "financial",
];

fn subset(all: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(all, 0..=all.len())
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

/// The same names in another order and case, some repeated.
fn variant(names: &[String]) -> impl Strategy<Value = Vec<String>> + use<> {
    let names = names.to_vec();
    let n = names.len();
    (
        Just(names).prop_shuffle(),
        proptest::collection::vec(any::<bool>(), n * 8),
        proptest::collection::vec(any::<bool>(), n),
    )
        .prop_map(|(shuffled, upper, repeat)| {
            let mut out = Vec::new();
            for (i, name) in shuffled.iter().enumerate() {
                let cased: String = name
                    .chars()
                    .enumerate()
                    .map(|(j, c)| {
                        if upper.get(i * 8 + j % 8).copied().unwrap_or(false) {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                out.push(cased.clone());
                if repeat.get(i).copied().unwrap_or(false) {
                    out.push(cased);
                }
            }
            out
        })
}

#[derive(Clone, Debug)]
struct Case {
    source_classes: Vec<String>,
    source_enabled: bool,
    target_traits: Vec<String>,
    target_classes: Vec<String>,
    target_enabled: bool,
    data: Vec<String>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        subset(CLASSES),
        proptest::bool::weighted(0.9),
        subset(TRAITS),
        subset(CLASSES),
        proptest::bool::weighted(0.9),
        subset(CLASSES),
    )
        .prop_map(
            |(
                source_classes,
                source_enabled,
                target_traits,
                target_classes,
                target_enabled,
                data,
            )| Case {
                source_classes,
                source_enabled,
                target_traits,
                target_classes,
                target_enabled,
                data,
            },
        )
}

fn decide_case(policy: &Policy, c: &Case) -> Decision {
    let source = PluginFacts {
        id: "s".to_owned(),
        traits: vec![],
        data_classification: c.source_classes.clone(),
        enabled: c.source_enabled,
    }
    .compile(policy);
    let target: CompiledFacts = PluginFacts {
        id: "t".to_owned(),
        traits: c.target_traits.clone(),
        data_classification: c.target_classes.clone(),
        enabled: c.target_enabled,
    }
    .compile(policy);
    policy.decide(
        &source,
        Action::Deliver { target: &target },
        &policy.data_traits(&c.data),
    )
}

/// Random valid rule sets over the property vocabulary.
fn random_rules() -> impl Strategy<Value = Vec<Rule>> {
    let one = (
        proptest::sample::subsequence(&CLASSES[..5], 1..=2),
        proptest::sample::subsequence(&TRAITS[..5], 0..=2),
        proptest::sample::subsequence(&CLASSES[..5], 0..=1),
        proptest::sample::subsequence(&TRAITS[..5], 0..=1),
        0..3u8,
        any::<bool>(),
    );
    proptest::collection::vec(one, 0..8).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(
                |(i, (data, traits, classification, forbid, effect, otherwise))| {
                    let forbid: Vec<&str> =
                        forbid.into_iter().filter(|f| !traits.contains(f)).collect();
                    let target = TargetCondition {
                        traits: names(&traits),
                        classification: names(&classification),
                        forbid_traits: names(&forbid),
                    };
                    let effect = match effect {
                        0 => RuleEffect::Allow,
                        1 => RuleEffect::Deny,
                        _ => RuleEffect::Sanitize {
                            fields: names(&["/x"]),
                        },
                    };
                    let mut r = rule(&format!("r{i}"), &data, target, effect);
                    if otherwise && r.effect != RuleEffect::Deny && !r.target.is_empty() {
                        r.otherwise_deny = Some("unmet".to_owned());
                    }
                    r
                },
            )
            .collect()
    })
}

/// Whether some rule forbids `name` on a target: it lists it in `forbid_traits`,
/// or it is a deny rule that applies to targets with it.
fn forbid_rule_names(rules: &[Rule], name: &str) -> bool {
    rules.iter().any(|r| {
        r.target.forbid_traits.iter().any(|t| t == name)
            || (r.effect == RuleEffect::Deny && r.target.traits.iter().any(|t| t == name))
    })
}

proptest! {
    /// An untagged event is decided exactly as the same event tagged with its
    /// publisher's classification — for any rules, publisher and subscriber — so it
    /// never reaches a subscriber the tagged one would not, nor less sanitised.
    #[test]
    fn an_untagged_event_is_decided_as_tagged_with_the_publishers_classification(
        rules in random_rules(),
        c in case(),
    ) {
        let policy = Policy::new(rules).unwrap();
        let untagged = Case { data: Vec::new(), ..c.clone() };
        let tagged = Case { data: c.source_classes.clone(), ..c.clone() };
        let d = decide_case(&policy, &untagged);
        if c.source_classes.is_empty() {
            if c.source_enabled && c.target_enabled {
                prop_assert_eq!(&*d.rule, codes::RULE_UNTAGGED);
            }
            prop_assert!(d.is_deny());
        } else {
            prop_assert_eq!(&d, &decide_case(&policy, &tagged), "{:?}", c);
        }
    }

    /// The same over the default policy, every effect checked on the payload: the
    /// untagged copy delivered never holds a field the tagged copy would not.
    #[test]
    fn untagged_phi_is_never_delivered_with_more_than_tagged_phi(c in case()) {
        let policy = Policy::default();
        let mut c = c;
        c.source_classes.retain(|s| s != "financial");
        let d = decide_case(&policy, &Case { data: Vec::new(), ..c.clone() });
        let tagged = decide_case(&policy, &Case { data: c.source_classes.clone(), ..c.clone() });
        let payload = json!({"phi": {"mrn": "M-1"}, "patient": "p", "ssn": "s", "visit": "v"});
        let (mut a, mut b) = (payload.clone(), payload);
        d.apply(&mut a);
        tagged.apply(&mut b);
        prop_assert_eq!(d.is_deny(), tagged.is_deny() || c.source_classes.is_empty());
        if !d.is_deny() {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn phi_never_reaches_a_target_without_handles_phi_unredacted(c in case(), phi_case in variant(&names(&["phi"]))) {
        let policy = Policy::default();
        let mut c = c;
        c.data.extend(phi_case);
        let d = decide_case(&policy, &c);
        if !c.target_traits.iter().any(|t| t == "handles_phi") {
            prop_assert!(d.is_deny(), "{c:?} → {d:?}");
        }
        if c.target_traits.iter().any(|t| t == "external_service") {
            prop_assert!(!d.is_allow(), "{c:?} → {d:?}");
            if let Some(fields) = d.sanitize_fields() {
                prop_assert!(fields.iter().any(|f| f.as_str() == "/phi"));
            }
        }
    }

    #[test]
    fn a_decision_never_depends_on_case_or_order(
        (c, traits, source_classes, target_classes, data) in case().prop_flat_map(|c| {
            let (t, s, tc, d) = (variant(&c.target_traits), variant(&c.source_classes), variant(&c.target_classes), variant(&c.data));
            (Just(c), t, s, tc, d)
        })
    ) {
        let policy = Policy::default();
        let again = Case { source_classes, target_traits: traits, target_classes, data, ..c.clone() };
        prop_assert_eq!(decide_case(&policy, &c), decide_case(&policy, &again));
    }

    #[test]
    fn adding_a_target_trait_never_turns_a_default_allow_into_a_deny(c in case(), extra in proptest::sample::select(TRAITS), class in proptest::sample::select(CLASSES)) {
        let policy = Policy::default();
        let before = decide_case(&policy, &c);
        let mut more = c.clone();
        more.target_traits.push(extra.to_owned());
        more.target_classes.push(class.to_owned());
        let after = decide_case(&policy, &more);
        prop_assert!(!(before.is_allow() && after.is_deny()), "{c:?}: {before:?} → {after:?}");
    }

    #[test]
    fn adding_a_target_trait_turns_allow_into_deny_only_through_a_forbid_rule(
        rules in random_rules(), c in case(), extra in proptest::sample::select(&TRAITS[..5]), class in proptest::sample::select(&CLASSES[..5])
    ) {
        let policy = Policy::new(rules.clone()).expect("generated rules are valid");
        let before = decide_case(&policy, &c);
        let mut more = c.clone();
        more.target_traits.push(extra.to_owned());
        let after = decide_case(&policy, &more);
        if before.is_allow() && after.is_deny() {
            prop_assert!(forbid_rule_names(&rules, extra), "{rules:?} {c:?} + {extra}: {before:?} → {after:?}");
        }
        // Classifications have no forbid list: adding one turns allow into deny only
        // through a deny rule whose condition names it.
        let mut classified = c.clone();
        classified.target_classes.push(class.to_owned());
        let after = decide_case(&policy, &classified);
        let deny_names_class = rules.iter().any(|r| {
            r.effect == RuleEffect::Deny && r.target.classification.iter().any(|t| t == class)
        });
        prop_assert!(
            deny_names_class || !(before.is_allow() && after.is_deny()),
            "{rules:?} {c:?} + {class}: {before:?} → {after:?}"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_loader(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = Policy::from_json_slice(&bytes) {
            let _ = e.to_string();
        }
    }

    #[test]
    fn policy_shaped_json_never_panics_and_errors_point_inside_the_file(text in policy_like_json()) {
        match Policy::from_json_str(&text) {
            Ok(p) => prop_assert!(p.rules().len() <= policy::MAX_RULES),
            Err(e) => {
                let p = e.position.expect("file errors have a position");
                prop_assert!(p.line >= 1 && p.line <= text.lines().count().max(1) + 1, "{e} in {text}");
                prop_assert!(p.column >= 1);
            }
        }
    }

    #[test]
    fn sanitize_removes_every_named_member(
        keys in proptest::collection::btree_set("[a-z~/]{1,4}", 1..6),
        drop in proptest::collection::vec(any::<bool>(), 6),
    ) {
        let escape = |k: &str| format!("/{}", k.replace('~', "~0").replace('/', "~1"));
        let mut payload = Value::Object(keys.iter().map(|k| (k.clone(), json!({"v": k}))).collect());
        let removed: Vec<&String> = keys.iter().zip(&drop).filter(|(_, d)| **d).map(|(k, _)| k).collect();
        let pointers: Vec<policy::JsonPointer> = removed
            .iter()
            .map(|k| policy::JsonPointer::parse(&escape(k)).expect("valid"))
            .collect();
        prop_assert_eq!(policy::sanitize(&mut payload, &pointers), removed.len());
        for k in &keys {
            prop_assert_eq!(payload.get(k.as_str()).is_some(), !removed.contains(&k));
        }
    }
}

/// JSON text shaped like a policy file, with random mistakes in it.
fn policy_like_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(json!("allow")),
        Just(json!("deny")),
        Just(json!("sanitize")),
        Just(json!("phi")),
        Just(json!("/phi")),
        Just(json!("bad~")),
        Just(json!("")),
        Just(json!(1)),
        Just(json!(null)),
        "[a-zA-Z_.~/ -]{0,8}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                proptest::sample::select(
                    &[
                        "id",
                        "data_traits",
                        "target",
                        "traits",
                        "classification",
                        "forbid_traits",
                        "effect",
                        "fields",
                        "reason",
                        "otherwise_deny",
                        "description",
                        "extra",
                    ][..]
                ),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    });
    (
        proptest::collection::vec(value, 0..4),
        any::<bool>(),
        0..3u32,
    )
        .prop_map(|(rules, pretty, version)| {
            let file = json!({"version": version, "rules": rules});
            if pretty {
                serde_json::to_string_pretty(&file).unwrap_or_default()
            } else {
                file.to_string()
            }
        })
}

// ---------------------------------------------------------------------------------
// docs/policy.md stays true

fn policy_doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md"))
        .expect("docs/policy.md is readable")
}

#[test]
fn the_documented_example_file_loads_and_decides_as_described() {
    let doc = policy_doc();
    let start = doc.find("```json\n").expect("an example") + "```json\n".len();
    let end = start + doc[start..].find("```").expect("closed");
    let policy = Policy::from_json_str(&doc[start..end]).expect("the example is valid");
    let mut external = PHI_TARGET.to_vec();
    external.push("external_service");
    let d = deliver(&policy, &publisher(), &facts(&external, &["phi"]), &["phi"]);
    assert_decision(
        &d,
        "deny",
        "phi.never-external",
        "phi_never_to_external_services",
    );
    let d = deliver(
        &policy,
        &publisher(),
        &facts(&["handles_pii"], &[]),
        &["pii"],
    );
    assert_decision(
        &d,
        "sanitize",
        "pii.redacted-for-analytics",
        "pii_contact_details_removed",
    );
    assert_eq!(fields(&d), ["/email", "/address/street", "/phones/0"]);
    let d = deliver(
        &policy,
        &publisher(),
        &facts(&[], &["confidential"]),
        &["confidential"],
    );
    assert_decision(
        &d,
        "deny",
        codes::RULE_UNKNOWN_DATA_TRAIT,
        codes::UNKNOWN_DATA_TRAIT,
    );
}

#[test]
fn the_documented_error_messages_are_the_real_ones() {
    let doc = policy_doc();
    let inputs = [
        "{\n  \"version\": 1,\n  \"rules\": [,]\n}".to_owned(),
        file_with(
            "    {\"id\": \"a.one\", \"data_traits\": [\"public\"], \"effect\": \"allow\", \"reason\": \"r\"},\n    {\"id\": \"b.two\", \"data_traits\": [\"public\"],\n     \"effect\": \"alow\", \"reason\": \"r\"}",
        ),
        file_with(
            "    {\"id\": \"s\", \"data_traits\": [\"phi\"], \"effect\": \"sanitize\",\n     \"fields\": [\"/ok\",\n                \"no-slash\"], \"reason\": \"r\"}",
        ),
        file_with(
            "    {\"id\": \"same\", \"data_traits\": [\"public\"], \"effect\": \"allow\", \"reason\": \"r\"},\n    {\"id\": \"same\", \"data_traits\": [\"internal\"], \"effect\": \"allow\", \"reason\": \"r\"}",
        ),
        file_with(
            "    {\"id\": \"s\", \"data_traits\": [\"phi\"], \"effect\": \"sanitize\", \"reason\": \"r\"}",
        ),
        file_with(
            "    {\"id\": \"a\", \"data_traits\": \"x\", \"effect\": \"allow\", \"reason\": \"r\"}",
        ),
    ];
    for input in &inputs {
        let message = load_error(input).to_string();
        assert!(
            doc.contains(&format!("\n{message}\n")),
            "docs/policy.md lacks: {message}"
        );
    }
}
