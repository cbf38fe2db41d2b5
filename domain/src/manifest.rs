//! Plugin manifests: parsing, JSON-schema validation and the rules a schema cannot say.
//!
//! [`ManifestValidator::validate`] returns every violation at once, each with a JSON
//! pointer, a stable code and a message. Messages never echo the offending value, so
//! they are safe to return and short.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vivified_ports::PluginId;

/// The manifest JSON schema (draft-07), the one copy the server, the CLI and the tests
/// use. Its file lives at `schemas/manifest.schema.json` in the repository.
pub const MANIFEST_SCHEMA: &str = include_str!("../../schemas/manifest.schema.json");

/// One reason a manifest is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer to the offending member (a missing member's own pointer).
    pub path: String,
    /// Stable machine-readable code, e.g. `required`, `pattern`, `phi_requires_encryption`.
    pub code: String,
    /// A sentence for humans.
    pub message: String,
}

impl Violation {
    fn new(path: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {} ({})", self.message, self.code)
    }
}

/// Interface contracts a plugin can implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Contract {
    /// Sends and receives messages.
    CommunicationPlugin,
    /// Stores and retrieves blobs.
    StoragePlugin,
    /// Answers questions about users.
    IdentityPlugin,
}

/// Declared plugin traits (what the plugin is allowed and required to do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginTrait {
    /// May receive protected health information.
    HandlesPhi,
    /// May receive personally identifiable information.
    HandlesPii,
    /// Encrypts what it stores and sends.
    RequiresEncryption,
    /// Talks to services outside the platform.
    ExternalService,
    /// Its actions must be audited.
    AuditRequired,
}

/// Data classifications a plugin may handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Anyone may see it.
    Public,
    /// Inside the platform only.
    Internal,
    /// Business confidential.
    Confidential,
    /// Protected health information.
    Phi,
    /// Personally identifiable information.
    Pii,
}

/// Audit detail the plugin commits to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditLevel {
    /// No audit.
    None,
    /// Basic.
    Basic,
    /// Detailed.
    Detailed,
    /// Everything.
    Complete,
}

/// `security` of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Security {
    /// Callers must authenticate.
    pub authentication_required: bool,
    /// Classes of data the plugin handles.
    pub data_classification: Vec<DataClass>,
}

/// `compliance` of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Compliance {
    /// HIPAA controls the plugin implements, e.g. `164.312(a)`.
    pub hipaa_controls: Vec<String>,
    /// Audit level.
    pub audit_level: AuditLevel,
}

/// A validated manifest: the typed view plus the JSON exactly as sent (unknown
/// members kept).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Manifest {
    /// Plugin id.
    pub id: PluginId,
    /// Display name.
    pub name: String,
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Contracts implemented.
    pub contracts: Vec<Contract>,
    /// Declared traits.
    pub traits: Vec<PluginTrait>,
    /// Ids of plugins this one needs.
    #[serde(default)]
    pub dependencies: Vec<PluginId>,
    /// Hostnames it may reach.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Named paths it serves.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
    /// Security declarations.
    pub security: Security,
    /// Compliance declarations.
    pub compliance: Compliance,
    /// The manifest as sent.
    #[serde(skip)]
    pub raw: Value,
}

impl Manifest {
    /// Whether the manifest declares `t`.
    pub fn has_trait(&self, t: PluginTrait) -> bool {
        self.traits.contains(&t)
    }
}

/// Compiled manifest schema plus the domain rules. Build once, share (`Send + Sync`).
pub struct ManifestValidator {
    schema: jsonschema::Validator,
}

impl fmt::Debug for ManifestValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestValidator").finish_non_exhaustive()
    }
}

/// The embedded schema failed to compile (a build defect, not a user error).
#[derive(Debug, thiserror::Error)]
#[error("manifest schema does not compile: {0}")]
pub struct SchemaError(String);

impl ManifestValidator {
    /// Compiles the embedded [`MANIFEST_SCHEMA`].
    ///
    /// # Errors
    /// [`SchemaError`] if the embedded schema is not valid JSON Schema.
    pub fn new() -> Result<Self, SchemaError> {
        let schema: Value =
            serde_json::from_str(MANIFEST_SCHEMA).map_err(|e| SchemaError(e.to_string()))?;
        let schema = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .build(&schema)
            .map_err(|e| SchemaError(e.to_string()))?;
        Ok(Self { schema })
    }

    /// Validates `manifest` against the schema and every domain rule.
    ///
    /// # Errors
    /// Every violation found, sorted by path then code; never only the first.
    pub fn validate(&self, manifest: &Value) -> Result<Manifest, Vec<Violation>> {
        self.validate_owned(manifest.clone())
    }

    /// [`ManifestValidator::validate`] for a manifest the caller no longer needs: it
    /// becomes [`Manifest::raw`] without a copy.
    ///
    /// # Errors
    /// Every violation found, sorted by path then code.
    pub fn validate_owned(&self, manifest: Value) -> Result<Manifest, Vec<Violation>> {
        let checked = self.check_owned(manifest)?;
        match Manifest::deserialize(&checked.raw) {
            Ok(mut m) => {
                m.raw = checked.raw;
                Ok(m)
            }
            Err(e) => Err(vec![Violation::new("", "type", e.to_string())]),
        }
    }

    /// The checks of [`ManifestValidator::validate_owned`] (the schema, then every
    /// domain rule) without building the typed [`Manifest`]: for a caller that keeps
    /// the manifest as sent and needs only its id, as the registry does. The typed
    /// view copies every string and cost a third of a validation.
    ///
    /// # Errors
    /// Every violation found, sorted by path then code.
    pub fn check_owned(&self, manifest: Value) -> Result<CheckedManifest, Vec<Violation>> {
        // `is_valid` stops at the first error and builds none: the common case (a
        // valid manifest) costs a third of collecting errors; an invalid one is walked
        // again to collect every violation.
        let mut violations: Vec<Violation> = if self.schema.is_valid(&manifest) {
            Vec::new()
        } else {
            self.schema
                .iter_errors(&manifest)
                .map(|e| schema_violation(&e))
                .collect()
        };
        check_rules(&manifest, &mut violations);
        if violations.is_empty() {
            // The schema requires an id matching the id pattern; checked again here
            // rather than trusted, so a schema edit cannot yield an invalid id.
            match manifest
                .get("id")
                .and_then(Value::as_str)
                .map(PluginId::parse)
            {
                Some(Ok(id)) => return Ok(CheckedManifest { id, raw: manifest }),
                Some(Err(e)) => violations.push(Violation::new("/id", "pattern", e.to_string())),
                None => violations.push(Violation::new("/id", "required", "`id` is required")),
            }
        }
        violations.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.code.cmp(&b.code)));
        violations.dedup();
        Err(violations)
    }
}

/// A manifest that passed [`ManifestValidator::check_owned`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedManifest {
    /// Its id.
    pub id: PluginId,
    /// The manifest as sent, unknown members kept.
    pub raw: Value,
}

/// Whether `s` cites a HIPAA rule section: `164.` three digits, then any number of
/// parenthesised lowercase letters or digits (`164.312(b)`, `164.312(a)(2)(iv)`), the
/// schema's `^164\.\d{3}(\([a-z0-9]+\))*$`.
pub fn is_hipaa_citation(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("164.") else {
        return false;
    };
    let (Some(section), Some(mut rest)) = (rest.get(..3), rest.get(3..)) else {
        return false;
    };
    if !section.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('(') else {
            return false;
        };
        let Some(end) = inner.find(')') else {
            return false;
        };
        let (part, after) = (&inner[..end], &inner[end + 1..]);
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return false;
        }
        rest = after;
    }
    true
}

fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn schema_violation(err: &jsonschema::ValidationError<'_>) -> Violation {
    let path = err.instance_path().as_str().to_owned();
    let kind = err.kind();
    let (path, code, message) = match kind {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            (
                format!("{path}/{}", escape_pointer_token(name)),
                "required".to_owned(),
                format!("`{name}` is required"),
            )
        }
        ValidationErrorKind::Pattern { pattern } => (
            path,
            "pattern".to_owned(),
            format!("must match the pattern {pattern}"),
        ),
        ValidationErrorKind::Enum { options } => {
            let valid: Vec<&str> = options
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let hint = err
                .instance()
                .as_str()
                .and_then(|given| crate::suggest::nearest(given, &valid))
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default();
            (
                path,
                "enum".to_owned(),
                format!("must be one of {options}{hint}"),
            )
        }
        ValidationErrorKind::Type { kind } => (
            path,
            "type".to_owned(),
            format!("must be of type {}", type_name(kind)),
        ),
        ValidationErrorKind::MaxLength { limit } => (
            path,
            "max_length".to_owned(),
            format!("must be at most {limit} characters long"),
        ),
        ValidationErrorKind::MinLength { limit } => (
            path,
            "min_length".to_owned(),
            format!("must be at least {limit} characters long"),
        ),
        ValidationErrorKind::MaxItems { limit } => (
            path,
            "max_items".to_owned(),
            format!("must have at most {limit} items"),
        ),
        ValidationErrorKind::MaxProperties { limit } => (
            path,
            "max_properties".to_owned(),
            format!("must have at most {limit} members"),
        ),
        ValidationErrorKind::UniqueItems => (
            path,
            "unique_items".to_owned(),
            "items must be unique".to_owned(),
        ),
        other => (path, to_snake(other.keyword()), "is not valid".to_owned()),
    };
    Violation {
        path,
        code,
        message,
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(ts) => ts
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn to_snake(keyword: &str) -> String {
    let mut out = String::with_capacity(keyword.len() + 4);
    for c in keyword.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Ids that would collide with the core's own routes (`/plugins/register`).
pub const RESERVED_IDS: &[&str] = &["register"];

/// Strings of a JSON array member, leniently (non-strings skipped): rules run even on
/// manifests the schema rejected, so the caller sees every violation at once.
fn strings<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn check_rules(m: &Value, out: &mut Vec<Violation>) {
    let traits = strings(m, "traits");
    let has = |t: &str| traits.contains(&t);
    let security = m.get("security").unwrap_or(&Value::Null);
    let compliance = m.get("compliance").unwrap_or(&Value::Null);
    let classes = strings(security, "data_classification");
    let classified = |c: &str| classes.contains(&c);

    for (t, c, code) in [
        ("handles_phi", "phi", "phi_classification_mismatch"),
        ("handles_pii", "pii", "pii_classification_mismatch"),
    ] {
        if has(t) && !classified(c) {
            out.push(Violation::new(
                "/security/data_classification",
                code,
                format!("trait `{t}` requires `{c}` in security.data_classification"),
            ));
        }
        if classified(c) && !has(t) {
            out.push(Violation::new(
                "/traits",
                code,
                format!("data classification `{c}` requires the trait `{t}`"),
            ));
        }
    }

    if has("handles_phi") {
        if !has("requires_encryption") {
            out.push(Violation::new(
                "/traits",
                "phi_requires_encryption",
                "`handles_phi` requires the trait `requires_encryption`",
            ));
        }
        if !has("audit_required") {
            out.push(Violation::new(
                "/traits",
                "phi_requires_audit",
                "`handles_phi` requires the trait `audit_required`",
            ));
        }
        let level = compliance.get("audit_level").and_then(Value::as_str);
        if !matches!(level, Some("detailed" | "complete")) {
            out.push(Violation::new(
                "/compliance/audit_level",
                "phi_requires_audit_level",
                "`handles_phi` requires compliance.audit_level `detailed` or `complete`",
            ));
        }
        // Blank or free-text entries are refused by the schema; checked again here
        // so that only a citation can satisfy the rule, whatever the schema says.
        let controls = strings(compliance, "hipaa_controls");
        if !controls.iter().any(|c| is_hipaa_citation(c)) {
            out.push(Violation::new(
                "/compliance/hipaa_controls",
                "phi_requires_hipaa_controls",
                "`handles_phi` requires at least one HIPAA control, cited like `164.312(b)`",
            ));
        }
    }

    if (has("handles_phi") || has("handles_pii"))
        && security.get("authentication_required") != Some(&Value::Bool(true))
    {
        out.push(Violation::new(
            "/security/authentication_required",
            "sensitive_requires_authentication",
            "a plugin that handles PHI or PII must set security.authentication_required to true",
        ));
    }

    let domains = m.get("allowed_domains").and_then(Value::as_array);
    if has("external_service") && domains.is_none_or(|d| d.is_empty()) {
        out.push(Violation::new(
            "/allowed_domains",
            "external_service_requires_domains",
            "`external_service` requires a non-empty allowed_domains",
        ));
    }
    for (i, d) in domains.into_iter().flatten().enumerate() {
        if let Some(d) = d.as_str()
            && let Err(why) = check_domain(d)
        {
            out.push(Violation::new(
                format!("/allowed_domains/{i}"),
                "invalid_domain",
                why,
            ));
        }
    }

    let own_id = m.get("id").and_then(Value::as_str);
    if let Some(id) = own_id.filter(|id| RESERVED_IDS.contains(id)) {
        out.push(Violation::new(
            "/id",
            "reserved_id",
            format!("`{id}` is reserved by the core's HTTP API"),
        ));
    }
    for (i, d) in m
        .get("dependencies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(d) = d.as_str() else { continue };
        if !PluginId::is_valid(d) {
            out.push(Violation::new(
                format!("/dependencies/{i}"),
                "invalid_dependency",
                "a dependency must be a plugin id (1 to 63 characters of [a-z0-9-])",
            ));
        } else if Some(d) == own_id {
            out.push(Violation::new(
                format!("/dependencies/{i}"),
                "self_dependency",
                "a plugin cannot depend on itself",
            ));
        }
    }

    if let Some(endpoints) = m.get("endpoints").and_then(Value::as_object) {
        for (name, path) in endpoints {
            if let Some(p) = path.as_str()
                && !p.starts_with('/')
            {
                out.push(Violation::new(
                    format!("/endpoints/{}", escape_pointer_token(name)),
                    "invalid_endpoint",
                    "an endpoint must be a path starting with `/`",
                ));
            }
        }
    }
}

/// Checks one `allowed_domains` entry: a DNS hostname of at least two labels, with at
/// most one leading `*.` wildcard label; never an IP literal, `localhost`, or a name
/// under `.local`, `.localhost` or `.internal`.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    let bare = domain.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Err("an IP literal is not allowed; use a hostname");
    }
    let host = domain.strip_prefix("*.").unwrap_or(domain);
    if host.is_empty() || host.len() > 253 {
        return Err("must be a DNS hostname of at most 253 characters");
    }
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Err("localhost is not allowed");
    }
    if lower.ends_with(".local") || lower.ends_with(".internal") {
        return Err("names under .local or .internal are not allowed");
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err("must be a fully qualified hostname (at least two labels)");
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(
                "must be a DNS hostname: labels of 1 to 63 letters, digits or '-', and only one leading `*.` wildcard",
            );
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("an IP literal is not allowed; use a hostname");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        for ok in [
            "example.com",
            "*.example.com",
            "a-b.c.example.org",
            "EXAMPLE.com",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(check_domain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "::1",
            "[::1]",
            "localhost",
            "foo.localhost",
            "printer.local",
            "db.internal",
            "*.*.example.com",
            "exa mple.com",
            "com",
            "-a.example.com",
            "a..example.com",
            "example.com.",
            "*.",
            "",
            "1.2.3.4.5",
            "a_b.example.com",
        ] {
            assert!(check_domain(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn hipaa_citations() {
        for ok in [
            "164.312",
            "164.312(b)",
            "164.312(a)(2)(iv)",
            "164.308(a)(1)(ii)(d)",
        ] {
            assert!(is_hipaa_citation(ok), "{ok}");
        }
        for bad in [
            "",
            " ",
            "164.312 ",
            " 164.312(b)",
            "164.31",
            "164.3120",
            "164.312(B)",
            "164.312()",
            "164.312(b",
            "164.312(b))",
            "164.312b",
            "165.312(b)",
            "HIPAA",
            "164.3é2",
            "164.31२",
        ] {
            assert!(!is_hipaa_citation(bad), "{bad:?} must be rejected");
        }
    }

    proptest::proptest! {
        /// The domain's citation check and the schema's pattern accept the same
        /// controls, and a PHI manifest is valid exactly when it cites one.
        #[test]
        fn citation_check_agrees_with_the_schema(
            control in "(164\\.[0-9]{2,4}|16[0-9]\\.[0-9]{3}|[ a-zA-Z]{0,3})(\\([a-zB ]{0,2}[0-9]?\\)|\\(|\\)|x){0,3}",
        ) {
            let v = ManifestValidator::new().unwrap();
            let mut m: Value = serde_json::from_str(include_str!(
                "../../schemas/examples/ehr-connector.json"
            ))
            .unwrap();
            m["compliance"]["hipaa_controls"] = serde_json::json!([control]);
            let by_schema = v.validate(&m).is_ok();
            proptest::prop_assert_eq!(by_schema, is_hipaa_citation(&control), "{:?}", control);
        }
    }

    #[test]
    fn reserved_ids() {
        let v = ManifestValidator::new().unwrap();
        let mut m: Value =
            serde_json::from_str(include_str!("../../schemas/examples/minimal.json")).unwrap();
        m["id"] = "register".into();
        let errs = v.validate(&m).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            (errs[0].path.as_str(), errs[0].code.as_str()),
            ("/id", "reserved_id")
        );
        m["id"] = "registered".into();
        assert!(v.validate(&m).is_ok());
    }

    #[test]
    fn snake() {
        assert_eq!(to_snake("maxLength"), "max_length");
        assert_eq!(to_snake("additionalProperties"), "additional_properties");
    }
}
