//! The rule language: [`Rule`], the built-in [`default_rules`], and the checks every
//! rule set passes before it is compiled, whether it comes from a file or from code.

use std::fmt;

use super::pointer::JsonPointer;

/// Most rules a policy may hold.
pub const MAX_RULES: usize = 1024;
/// Most distinct data trait / classification names, and most distinct plugin trait
/// names, a policy may mention (each set is compiled to a 64-bit mask).
pub const MAX_NAMES: usize = 64;
/// Longest rule id, reason code or trait name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most fields one `sanitize` rule may name.
pub const MAX_FIELDS: usize = 256;

/// One rule of a policy. The file form is the same, member for member (see
/// `docs/policy.md`).
///
/// A rule **matches** an event that carries at least one of its `data_traits`. If
/// the target meets its `target` condition, the rule decides its `effect` with
/// `reason`; if not, it decides `Deny` with `otherwise_deny` when that is set, and
/// nothing otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique id, reported with every decision the rule makes: `[a-z0-9][a-z0-9._-]*`,
    /// not starting with `core.` (the engine's own checks).
    pub id: String,
    /// Free text for operators.
    pub description: Option<String>,
    /// The data traits the rule is about (any of them); compared case-insensitively.
    pub data_traits: Vec<String>,
    /// What the target must be for `effect` to apply.
    pub target: TargetCondition,
    /// What the rule decides when the target meets the condition.
    pub effect: RuleEffect,
    /// Reason code reported when `effect` applies: `[a-z0-9][a-z0-9_]*`.
    pub reason: String,
    /// When set, the rule decides `Deny` with this reason code if the target does not
    /// meet the condition. Only on `allow` and `sanitize` rules with a condition.
    pub otherwise_deny: Option<String>,
}

/// A condition on the target plugin. Empty: every target meets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetCondition {
    /// Plugin traits the target must all declare.
    pub traits: Vec<String>,
    /// Data classifications the target must all declare.
    pub classification: Vec<String>,
    /// Plugin traits the target must not declare (a **forbid** list).
    pub forbid_traits: Vec<String>,
}

impl TargetCondition {
    /// Whether every target meets the condition.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.traits.is_empty() && self.classification.is_empty() && self.forbid_traits.is_empty()
    }
}

/// What a rule decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleEffect {
    /// Deliver as is.
    Allow,
    /// Do not deliver.
    Deny,
    /// Deliver without these fields (JSON Pointers into the payload; never empty).
    Sanitize {
        /// RFC 6901 pointers.
        fields: Vec<String>,
    },
}

impl RuleEffect {
    /// `allow`, `deny` or `sanitize`, as the file spells it.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Sanitize { .. } => "sanitize",
        }
    }
}

/// The top-level members the default `phi.external-service-redacted` rule removes:
/// `/phi` (where publishers are asked to keep PHI) and, for payloads that do not
/// follow that convention, the usual top-level names of HIPAA identifiers.
pub const DEFAULT_PHI_REDACTED_FIELDS: &[&str] = &[
    "/phi",
    "/patient",
    "/medical_record_number",
    "/date_of_birth",
    "/ssn",
    "/diagnosis",
];

/// The built-in rules, in order. `schemas/policy.default.json` is the same set as a
/// policy file (a test keeps them equal).
#[must_use]
pub fn default_rules() -> Vec<Rule> {
    fn rule(
        id: &str,
        description: &str,
        data: &str,
        target: TargetCondition,
        effect: RuleEffect,
        reason: &str,
        otherwise_deny: Option<&str>,
    ) -> Rule {
        Rule {
            id: id.to_owned(),
            description: Some(description.to_owned()),
            data_traits: vec![data.to_owned()],
            target,
            effect,
            reason: reason.to_owned(),
            otherwise_deny: otherwise_deny.map(str::to_owned),
        }
    }
    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }
    vec![
        rule(
            "phi.qualified-target",
            "PHI only to a target that handles PHI, encrypts and is audited",
            "phi",
            TargetCondition {
                traits: names(&["handles_phi", "requires_encryption", "audit_required"]),
                ..TargetCondition::default()
            },
            RuleEffect::Allow,
            "phi_target_qualified",
            Some("phi_target_not_qualified"),
        ),
        rule(
            "phi.external-service-redacted",
            "A target that talks to outside services never receives PHI unredacted",
            "phi",
            TargetCondition {
                traits: names(&["external_service"]),
                ..TargetCondition::default()
            },
            RuleEffect::Sanitize {
                fields: names(DEFAULT_PHI_REDACTED_FIELDS),
            },
            "phi_redacted_for_external_service",
            None,
        ),
        rule(
            "pii.handles-pii",
            "PII only to a target that handles PII",
            "pii",
            TargetCondition {
                traits: names(&["handles_pii"]),
                ..TargetCondition::default()
            },
            RuleEffect::Allow,
            "pii_target_qualified",
            Some("pii_target_not_qualified"),
        ),
        rule(
            "confidential.classified-target",
            "Confidential data only to a target whose data classification includes it",
            "confidential",
            TargetCondition {
                classification: names(&["confidential"]),
                ..TargetCondition::default()
            },
            RuleEffect::Allow,
            "confidential_target_classified",
            Some("confidential_target_not_classified"),
        ),
        rule(
            "internal.enabled-plugins",
            "Internal data flows to any registered, enabled plugin",
            "internal",
            TargetCondition::default(),
            RuleEffect::Allow,
            "internal_data",
            None,
        ),
        rule(
            "public.anywhere",
            "Public data flows anywhere",
            "public",
            TargetCondition::default(),
            RuleEffect::Allow,
            "public_data",
            None,
        ),
    ]
}

/// Where a policy error is, in the file (1-based; columns count bytes, as
/// `serde_json`'s do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in bytes, from 1.
    pub column: usize,
}

/// What is wrong with a policy (stable codes, for tests and tooling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyErrorKind {
    /// The file is not UTF-8.
    NotUtf8,
    /// The file is not JSON.
    Syntax,
    /// JSON of the wrong shape: a missing or unknown member, a wrong type.
    Structure,
    /// `version` is not 1.
    UnsupportedVersion,
    /// More than [`MAX_RULES`] rules, [`MAX_NAMES`] names or [`MAX_FIELDS`] fields.
    TooMany,
    /// A rule id that is malformed or starts with `core.`.
    InvalidRuleId,
    /// Two rules with one id.
    DuplicateRuleId,
    /// A malformed reason code.
    InvalidReason,
    /// A malformed trait or classification name.
    InvalidName,
    /// A name listed twice in one list (case-insensitively).
    DuplicateName,
    /// A rule without data traits.
    NoDataTraits,
    /// An `effect` other than `allow`, `deny`, `sanitize`.
    UnknownEffect,
    /// A `sanitize` rule without fields.
    SanitizeWithoutFields,
    /// `fields` on a rule that does not sanitise.
    FieldsWithoutSanitize,
    /// A field that is not a JSON Pointer (or is the root).
    InvalidPointer,
    /// A field listed twice in one rule.
    DuplicateField,
    /// `otherwise_deny` on a deny rule or on a rule without a condition.
    MisplacedOtherwiseDeny,
    /// A trait both required and forbidden: the condition can never hold.
    ContradictoryCondition,
    /// `"untagged": "public"` in a policy without a rule for the data trait `public`.
    UntaggedPublicWithoutRule,
}

impl PolicyErrorKind {
    /// The stable code, e.g. `unknown_effect`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "not_utf8",
            Self::Syntax => "syntax",
            Self::Structure => "structure",
            Self::UnsupportedVersion => "unsupported_version",
            Self::TooMany => "too_many",
            Self::InvalidRuleId => "invalid_rule_id",
            Self::DuplicateRuleId => "duplicate_rule_id",
            Self::InvalidReason => "invalid_reason",
            Self::InvalidName => "invalid_name",
            Self::DuplicateName => "duplicate_name",
            Self::NoDataTraits => "no_data_traits",
            Self::UnknownEffect => "unknown_effect",
            Self::SanitizeWithoutFields => "sanitize_without_fields",
            Self::FieldsWithoutSanitize => "fields_without_sanitize",
            Self::InvalidPointer => "invalid_pointer",
            Self::DuplicateField => "duplicate_field",
            Self::MisplacedOtherwiseDeny => "misplaced_otherwise_deny",
            Self::ContradictoryCondition => "contradictory_condition",
            Self::UntaggedPublicWithoutRule => "untagged_public_without_rule",
        }
    }
}

impl fmt::Display for PolicyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy that cannot be loaded: where (line and column when it came from a file,
/// and a JSON pointer into the file), which rule, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct PolicyError {
    /// Line and column in the file; `None` for rules built in code.
    pub position: Option<Position>,
    /// JSON pointer to the offending member of the file form, e.g.
    /// `/rules/2/effect` (`""` for the whole file).
    pub path: String,
    /// The rule: `` `id` `` when it has one, else `#index` (from 0).
    pub rule: Option<String>,
    /// Stable code.
    pub kind: PolicyErrorKind,
    /// What is wrong, for humans.
    pub message: String,
}

fn render(e: &PolicyError) -> String {
    let mut out = String::new();
    if let Some(p) = e.position {
        out.push_str(&format!("line {}, column {}: ", p.line, p.column));
    }
    match &e.rule {
        Some(rule) => out.push_str(&format!("rule {rule} ({}): ", e.path)),
        None if !e.path.is_empty() => out.push_str(&format!("{}: ", e.path)),
        None => {}
    }
    out.push_str(&e.message);
    out.push_str(&format!(" ({})", e.kind));
    out
}

impl PolicyError {
    pub(crate) fn new(kind: PolicyErrorKind, path: String, message: impl Into<String>) -> Self {
        Self {
            position: None,
            path,
            rule: None,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn for_rule(mut self, index: usize, id: Option<&str>) -> Self {
        self.rule = Some(rule_label(index, id));
        self
    }
}

/// How errors name a rule: its id when it has a printable one, else its index.
pub(crate) fn rule_label(index: usize, id: Option<&str>) -> String {
    match id {
        Some(id) if is_rule_id(id) => format!("`{id}`"),
        _ => format!("#{index}"),
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
}

fn well_formed(s: &str, extra: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| extra(c))
}

/// Rule ids: `[a-z0-9][a-z0-9._-]*`, at most [`MAX_NAME_LEN`] bytes.
pub(crate) fn is_rule_id(s: &str) -> bool {
    well_formed(s, is_name_byte)
}

/// Reason codes: `[a-z0-9][a-z0-9_]*`, at most [`MAX_NAME_LEN`] bytes.
pub(crate) fn is_reason(s: &str) -> bool {
    well_formed(s, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
    })
}

/// Trait and classification names, once lowercased: `[a-z0-9][a-z0-9._-]*`.
pub(crate) fn normalize_name(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    well_formed(&lower, is_name_byte).then_some(lower)
}

/// A rule after its checks: names lowercased, pointers parsed.
#[derive(Debug)]
pub(crate) struct CheckedRule {
    pub(crate) id: String,
    pub(crate) data_traits: Vec<String>,
    pub(crate) traits: Vec<String>,
    pub(crate) classification: Vec<String>,
    pub(crate) forbid_traits: Vec<String>,
    pub(crate) effect: CheckedEffect,
    pub(crate) reason: String,
    pub(crate) otherwise_deny: Option<String>,
}

#[derive(Debug)]
pub(crate) enum CheckedEffect {
    Allow,
    Deny,
    Sanitize(Vec<JsonPointer>),
}

/// Checks every rule (the first error wins, in file order) and returns them
/// normalised.
pub(crate) fn check(rules: &[Rule]) -> Result<Vec<CheckedRule>, PolicyError> {
    if rules.len() > MAX_RULES {
        return Err(PolicyError::new(
            PolicyErrorKind::TooMany,
            "/rules".to_owned(),
            format!("{} rules, at most {MAX_RULES} are allowed", rules.len()),
        ));
    }
    let mut out: Vec<CheckedRule> = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let checked = check_rule(i, rule).map_err(|e| e.for_rule(i, Some(&rule.id)))?;
        if let Some(first) = out.iter().position(|r| r.id == checked.id) {
            return Err(PolicyError::new(
                PolicyErrorKind::DuplicateRuleId,
                format!("/rules/{i}/id"),
                format!("duplicate rule id, first used by rule #{first}"),
            )
            .for_rule(i, Some(&rule.id)));
        }
        out.push(checked);
    }
    Ok(out)
}

fn check_rule(i: usize, rule: &Rule) -> Result<CheckedRule, PolicyError> {
    let at = |member: &str| format!("/rules/{i}/{member}");
    if !is_rule_id(&rule.id) {
        return Err(PolicyError::new(
            PolicyErrorKind::InvalidRuleId,
            at("id"),
            format!(
                "a rule id is 1 to {MAX_NAME_LEN} bytes of [a-z0-9._-], starting with a letter or digit"
            ),
        ));
    }
    if rule.id.starts_with("core.") {
        return Err(PolicyError::new(
            PolicyErrorKind::InvalidRuleId,
            at("id"),
            "rule ids starting with `core.` are reserved for the engine's own checks",
        ));
    }
    if rule.data_traits.is_empty() {
        return Err(PolicyError::new(
            PolicyErrorKind::NoDataTraits,
            at("data_traits"),
            "a rule names at least one data trait",
        ));
    }
    let data_traits = names(&rule.data_traits, &at("data_traits"))?;
    let traits = names(&rule.target.traits, &at("target/traits"))?;
    let classification = names(&rule.target.classification, &at("target/classification"))?;
    let forbid_traits = names(&rule.target.forbid_traits, &at("target/forbid_traits"))?;
    if let Some(j) = forbid_traits.iter().position(|f| traits.contains(f)) {
        return Err(PolicyError::new(
            PolicyErrorKind::ContradictoryCondition,
            at(&format!("target/forbid_traits/{j}")),
            "this trait is also required by `target.traits`: the condition can never hold",
        ));
    }
    let effect = match &rule.effect {
        RuleEffect::Allow => CheckedEffect::Allow,
        RuleEffect::Deny => CheckedEffect::Deny,
        RuleEffect::Sanitize { fields } => {
            CheckedEffect::Sanitize(pointers(fields, &at("fields"))?)
        }
    };
    if !is_reason(&rule.reason) {
        return Err(invalid_reason(at("reason")));
    }
    if let Some(reason) = &rule.otherwise_deny {
        if matches!(effect, CheckedEffect::Deny) || rule.target.is_empty() {
            return Err(PolicyError::new(
                PolicyErrorKind::MisplacedOtherwiseDeny,
                at("otherwise_deny"),
                "`otherwise_deny` belongs on an allow or sanitize rule with a target condition",
            ));
        }
        if !is_reason(reason) {
            return Err(invalid_reason(at("otherwise_deny")));
        }
    }
    Ok(CheckedRule {
        id: rule.id.clone(),
        data_traits,
        traits,
        classification,
        forbid_traits,
        effect,
        reason: rule.reason.clone(),
        otherwise_deny: rule.otherwise_deny.clone(),
    })
}

fn invalid_reason(path: String) -> PolicyError {
    PolicyError::new(
        PolicyErrorKind::InvalidReason,
        path,
        format!(
            "a reason code is 1 to {MAX_NAME_LEN} bytes of [a-z0-9_], starting with a letter or digit"
        ),
    )
}

fn names(list: &[String], path: &str) -> Result<Vec<String>, PolicyError> {
    if list.len() > MAX_NAMES {
        return Err(PolicyError::new(
            PolicyErrorKind::TooMany,
            path.to_owned(),
            format!("{} names, at most {MAX_NAMES} are allowed", list.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (j, name) in list.iter().enumerate() {
        let Some(lower) = normalize_name(name) else {
            return Err(PolicyError::new(
                PolicyErrorKind::InvalidName,
                format!("{path}/{j}"),
                format!(
                    "a trait or classification name is 1 to {MAX_NAME_LEN} bytes of [A-Za-z0-9._-], starting with a letter or digit"
                ),
            ));
        };
        if out.contains(&lower) {
            return Err(PolicyError::new(
                PolicyErrorKind::DuplicateName,
                format!("{path}/{j}"),
                format!("`{lower}` is listed twice (names compare case-insensitively)"),
            ));
        }
        out.push(lower);
    }
    Ok(out)
}

fn pointers(fields: &[String], path: &str) -> Result<Vec<JsonPointer>, PolicyError> {
    if fields.is_empty() {
        return Err(PolicyError::new(
            PolicyErrorKind::SanitizeWithoutFields,
            path.to_owned(),
            "a sanitize rule names at least one field (a sanitize without fields would deny; write a deny rule)",
        ));
    }
    if fields.len() > MAX_FIELDS {
        return Err(PolicyError::new(
            PolicyErrorKind::TooMany,
            path.to_owned(),
            format!("{} fields, at most {MAX_FIELDS} are allowed", fields.len()),
        ));
    }
    let mut out: Vec<JsonPointer> = Vec::with_capacity(fields.len());
    for (j, field) in fields.iter().enumerate() {
        let pointer = JsonPointer::parse(field).map_err(|e| {
            PolicyError::new(
                PolicyErrorKind::InvalidPointer,
                format!("{path}/{j}"),
                format!("not a JSON pointer (RFC 6901): {e}"),
            )
        })?;
        if out.contains(&pointer) {
            return Err(PolicyError::new(
                PolicyErrorKind::DuplicateField,
                format!("{path}/{j}"),
                "this field is listed twice",
            ));
        }
        out.push(pointer);
    }
    Ok(out)
}
