//! The plugin manifest as a typed struct that serialises to exactly what
//! `schemas/manifest.schema.json` accepts, and a builder that checks the rules the core
//! will check, so a plugin finds out at start-up rather than at registration.
//!
//! The core remains the judge: [`ManifestBuilder::build`] checks the schema's shapes
//! and the compliance rules of `docs/api.md` ("Manifest violations") except
//! `invalid_domain`, which only the core checks.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod builder;

/// Interface contracts a plugin can implement (schema `contracts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Contract {
    /// Sends and receives messages ([`crate::CommunicationPlugin`]).
    CommunicationPlugin,
    /// Stores and retrieves blobs ([`crate::StoragePlugin`]).
    StoragePlugin,
    /// Answers questions about users ([`crate::IdentityPlugin`]).
    IdentityPlugin,
}

/// Declared traits (schema `traits`).
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

impl PluginTrait {
    /// The name on the wire, e.g. `handles_pii`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandlesPhi => "handles_phi",
            Self::HandlesPii => "handles_pii",
            Self::RequiresEncryption => "requires_encryption",
            Self::ExternalService => "external_service",
            Self::AuditRequired => "audit_required",
        }
    }
}

impl fmt::Display for PluginTrait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Data classifications (schema `security.data_classification`).
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

impl DataClass {
    /// The name on the wire, e.g. `pii`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Confidential => "confidential",
            Self::Phi => "phi",
            Self::Pii => "pii",
        }
    }
}

/// Audit detail the plugin commits to (schema `compliance.audit_level`).
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Callers of the plugin's endpoints must authenticate.
    pub authentication_required: bool,
    /// Classes of data the plugin handles.
    pub data_classification: Vec<DataClass>,
}

/// `compliance` of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    /// HIPAA controls the plugin implements, e.g. `164.312(a)`.
    pub hipaa_controls: Vec<String>,
    /// Audit level.
    pub audit_level: AuditLevel,
}

/// A plugin manifest. Serialises to a JSON object the schema accepts: required members
/// always, `description` only when set, the optional lists and `endpoints` always (empty
/// when unused). Build one with [`Manifest::builder`], which checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Plugin id: `[a-z0-9-]`, 1 to 63 characters, not `register`.
    pub id: String,
    /// Display name, 1 to 128 characters.
    pub name: String,
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Free text, at most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Contracts implemented.
    pub contracts: Vec<Contract>,
    /// Declared traits.
    pub traits: Vec<PluginTrait>,
    /// Ids of plugins this one needs.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Host names it may reach (required with `external_service`).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Event types it receives (`subscriptions`): dot-separated segments of
    /// `[A-Za-z0-9_-]` (case-sensitive), where a segment `*` matches exactly one segment (`patient.*`
    /// matches `patient.updated`, not `patient` nor `patient.a.b`). Serialised only when
    /// not empty, so a manifest without events is the same JSON as before events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<String>,
    /// Named paths it serves, e.g. `"health": "/health"`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
    /// Security declarations.
    pub security: Security,
    /// Compliance declarations.
    pub compliance: Compliance,
}

/// One reason a manifest is invalid, in the core's shape (`path`, `code`, `message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer to the offending member.
    pub path: String,
    /// Stable code, the same the core uses (`pattern`, `phi_requires_encryption`, …).
    pub code: String,
    /// A sentence for humans; never echoes the offending value.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.message, self.code)
    }
}

/// A manifest the builder (or the core) refused, with every violation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest: {}", .violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ManifestError {
    /// Every violation, sorted by path then code.
    pub violations: Vec<Violation>,
}

/// Ids the core reserves (they would collide with its routes).
pub const RESERVED_IDS: &[&str] = &["register"];

/// Largest list the schema allows (`maxItems`, `maxProperties`).
const MAX_ITEMS: usize = 64;

impl Manifest {
    /// Starts a manifest with its three identifying members. Everything else defaults
    /// to empty, `authentication_required: false` and audit level `basic`.
    pub fn builder(
        id: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> ManifestBuilder {
        ManifestBuilder {
            manifest: Self {
                id: id.into(),
                name: name.into(),
                version: version.into(),
                description: None,
                contracts: Vec::new(),
                traits: Vec::new(),
                dependencies: Vec::new(),
                allowed_domains: Vec::new(),
                subscriptions: Vec::new(),
                endpoints: BTreeMap::new(),
                security: Security {
                    authentication_required: false,
                    data_classification: Vec::new(),
                },
                compliance: Compliance {
                    hipaa_controls: Vec::new(),
                    audit_level: AuditLevel::Basic,
                },
            },
        }
    }

    /// Whether the manifest declares `t`.
    pub fn has_trait(&self, t: PluginTrait) -> bool {
        self.traits.contains(&t)
    }

    /// Checks the manifest as the core will (all but `invalid_domain`).
    ///
    /// # Errors
    /// [`ManifestError`] with every violation found.
    pub fn check(&self) -> Result<(), ManifestError> {
        let mut v = Vec::new();
        let mut add = |path: &str, code: &str, message: &str| {
            v.push(Violation {
                path: path.to_owned(),
                code: code.to_owned(),
                message: message.to_owned(),
            });
        };
        if self.id.is_empty() {
            add("/id", "min_length", "must be at least 1 characters long");
        }
        if self.id.chars().count() > 63 {
            add("/id", "max_length", "must be at most 63 characters long");
        }
        if !self.id.is_empty() && !is_plugin_id_chars(&self.id) {
            add("/id", "pattern", "must match the pattern ^[a-z0-9-]+$");
        }
        if RESERVED_IDS.contains(&self.id.as_str()) {
            add("/id", "reserved_id", "the id is reserved by the core's API");
        }
        if self.name.is_empty() {
            add("/name", "min_length", "must be at least 1 characters long");
        }
        if self.name.chars().count() > 128 {
            add("/name", "max_length", "must be at most 128 characters long");
        }
        if !is_semver_triplet(&self.version) {
            add(
                "/version",
                "pattern",
                "must match the pattern ^\\d+\\.\\d+\\.\\d+$",
            );
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1024)
        {
            add(
                "/description",
                "max_length",
                "must be at most 1024 characters long",
            );
        }
        let lists: [(&str, usize, bool); 8] = [
            (
                "/contracts",
                self.contracts.len(),
                has_duplicates(&self.contracts),
            ),
            ("/traits", self.traits.len(), has_duplicates(&self.traits)),
            (
                "/dependencies",
                self.dependencies.len(),
                has_duplicates(&self.dependencies),
            ),
            (
                "/allowed_domains",
                self.allowed_domains.len(),
                has_duplicates(&self.allowed_domains),
            ),
            (
                "/security/data_classification",
                self.security.data_classification.len(),
                has_duplicates(&self.security.data_classification),
            ),
            (
                "/compliance/hipaa_controls",
                self.compliance.hipaa_controls.len(),
                has_duplicates(&self.compliance.hipaa_controls),
            ),
            (
                "/subscriptions",
                self.subscriptions.len(),
                has_duplicates(&self.subscriptions),
            ),
            ("/endpoints", self.endpoints.len(), false),
        ];
        for (path, len, dup) in lists {
            if len > MAX_ITEMS {
                let code = if path == "/endpoints" {
                    "max_properties"
                } else {
                    "max_items"
                };
                add(path, code, "has too many items (at most 64)");
            }
            if dup {
                add(path, "unique_items", "items must be unique");
            }
        }
        for (i, control) in self.compliance.hipaa_controls.iter().enumerate() {
            let path = format!("/compliance/hipaa_controls/{i}");
            if control.is_empty() {
                add(&path, "min_length", "must be at least 1 characters long");
            }
            if control.chars().count() > 64 {
                add(&path, "max_length", "must be at most 64 characters long");
            }
            if !is_hipaa_citation(control) {
                add(
                    &path,
                    "pattern",
                    "must be a HIPAA citation such as 164.312(b) or 164.312(a)(2)(iv)",
                );
            }
        }
        for (i, dep) in self.dependencies.iter().enumerate() {
            let path = format!("/dependencies/{i}");
            if dep.is_empty() || dep.len() > 63 || !is_plugin_id_chars(dep) {
                add(&path, "invalid_dependency", "not a plugin id");
            } else if *dep == self.id {
                add(&path, "self_dependency", "a plugin cannot depend on itself");
            }
        }
        for (i, pattern) in self.subscriptions.iter().enumerate() {
            let path = format!("/subscriptions/{i}");
            // The schema's `maxLength` counts characters; a pattern that passes is ASCII,
            // so that is also 255 bytes.
            if pattern.chars().count() > MAX_SUBSCRIPTION_LEN {
                add(&path, "max_length", "must be at most 255 characters long");
            }
            if !is_subscription_pattern(pattern) {
                add(
                    &path,
                    "pattern",
                    "must match the pattern ^([A-Za-z0-9_-]+|\\*)(\\.([A-Za-z0-9_-]+|\\*))*$",
                );
            }
        }
        for (name, path) in &self.endpoints {
            if !path.starts_with('/') {
                add(
                    &format!("/endpoints/{}", name.replace('~', "~0").replace('/', "~1")),
                    "invalid_endpoint",
                    "an endpoint path must start with `/`",
                );
            }
        }
        let classes = &self.security.data_classification;
        let phi = self.has_trait(PluginTrait::HandlesPhi);
        let pii = self.has_trait(PluginTrait::HandlesPii);
        if phi != classes.contains(&DataClass::Phi) {
            add(
                if phi {
                    "/security/data_classification"
                } else {
                    "/traits"
                },
                "phi_classification_mismatch",
                "`handles_phi` and the `phi` data classification go together",
            );
        }
        if pii != classes.contains(&DataClass::Pii) {
            add(
                if pii {
                    "/security/data_classification"
                } else {
                    "/traits"
                },
                "pii_classification_mismatch",
                "`handles_pii` and the `pii` data classification go together",
            );
        }
        if phi {
            if !self.has_trait(PluginTrait::RequiresEncryption) {
                add(
                    "/traits",
                    "phi_requires_encryption",
                    "`handles_phi` requires the trait `requires_encryption`",
                );
            }
            if !self.has_trait(PluginTrait::AuditRequired) {
                add(
                    "/traits",
                    "phi_requires_audit",
                    "`handles_phi` requires the trait `audit_required`",
                );
            }
            if !matches!(
                self.compliance.audit_level,
                AuditLevel::Detailed | AuditLevel::Complete
            ) {
                add(
                    "/compliance/audit_level",
                    "phi_requires_audit_level",
                    "`handles_phi` requires audit_level `detailed` or `complete`",
                );
            }
            if !self
                .compliance
                .hipaa_controls
                .iter()
                .any(|c| is_hipaa_citation(c))
            {
                add(
                    "/compliance/hipaa_controls",
                    "phi_requires_hipaa_controls",
                    "`handles_phi` requires at least one HIPAA control, cited like `164.312(b)`",
                );
            }
        }
        if (phi || pii) && !self.security.authentication_required {
            add(
                "/security/authentication_required",
                "sensitive_requires_authentication",
                "`handles_phi` or `handles_pii` requires authentication_required: true",
            );
        }
        if self.has_trait(PluginTrait::ExternalService) && self.allowed_domains.is_empty() {
            add(
                "/allowed_domains",
                "external_service_requires_domains",
                "`external_service` requires at least one allowed domain",
            );
        }
        if v.is_empty() {
            return Ok(());
        }
        v.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.code.cmp(&b.code)));
        v.dedup();
        Err(ManifestError { violations: v })
    }
}

/// Longest subscription pattern the schema allows.
const MAX_SUBSCRIPTION_LEN: usize = 255;

/// `^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*$`: non-empty dot-separated segments,
/// each `*` or made of `[A-Za-z0-9_-]`.
fn is_subscription_pattern(s: &str) -> bool {
    s.split('.').all(|segment| {
        segment == "*"
            || (!segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    })
}

/// Whether `event_type` matches the subscription `pattern` (`*` matches exactly one
/// segment), as the core decides who receives an event.
pub fn subscription_matches(pattern: &str, event_type: &str) -> bool {
    let mut p = pattern.split('.');
    let mut e = event_type.split('.');
    loop {
        match (p.next(), e.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The core's citation rule (schema pattern `^164\.\d{3}(\([a-z0-9]+\))*$`), kept
/// here because the SDK does not depend on the core; `tests/manifest_schema.rs`
/// checks that both agree.
fn is_hipaa_citation(s: &str) -> bool {
    let Some(mut rest) = s.strip_prefix("164.").and_then(|r| {
        r.get(3..)
            .filter(|_| r.as_bytes()[..3].iter().all(u8::is_ascii_digit))
    }) else {
        return false;
    };
    while let Some(inner) = rest.strip_prefix('(') {
        let Some((part, after)) = inner.split_once(')') else {
            return false;
        };
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return false;
        }
        rest = after;
    }
    rest.is_empty()
}

fn is_plugin_id_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_semver_triplet(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn has_duplicates<T: PartialEq>(items: &[T]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, a)| items[..i].contains(a))
}

/// Builds a [`Manifest`]. Adding the same contract, trait, class, control, domain or
/// dependency twice keeps one (the schema wants unique items).
#[derive(Clone, Debug)]
#[must_use]
pub struct ManifestBuilder {
    manifest: Manifest,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(e: &ManifestError) -> Vec<&str> {
        e.violations.iter().map(|v| v.code.as_str()).collect()
    }

    #[test]
    fn minimal_manifest_serialises_required_members() {
        let m = Manifest::builder("demo", "Demo", "0.1.0").build().unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["id"], "demo");
        assert!(v.get("description").is_none());
        assert_eq!(v["security"]["authentication_required"], false);
        assert_eq!(v["compliance"]["audit_level"], "basic");
        assert_eq!(serde_json::from_value::<Manifest>(v).unwrap(), m);
    }

    #[test]
    fn builder_keeps_items_unique() {
        let m = Manifest::builder("demo", "Demo", "1.0.0")
            .traits([PluginTrait::AuditRequired, PluginTrait::AuditRequired])
            .contract(Contract::StoragePlugin)
            .contract(Contract::StoragePlugin)
            .build()
            .unwrap();
        assert_eq!(m.traits, [PluginTrait::AuditRequired]);
        assert_eq!(m.contracts, [Contract::StoragePlugin]);
    }

    #[test]
    fn every_violation_is_reported() {
        let e = Manifest::builder("Bad_Id", "", "1.0")
            .traits([PluginTrait::HandlesPhi, PluginTrait::ExternalService])
            .endpoint("x", "relative")
            .dependency("Bad_Id")
            .build()
            .unwrap_err();
        let c = codes(&e);
        for expected in [
            "pattern",
            "min_length",
            "phi_classification_mismatch",
            "phi_requires_encryption",
            "phi_requires_audit",
            "phi_requires_audit_level",
            "phi_requires_hipaa_controls",
            "sensitive_requires_authentication",
            "external_service_requires_domains",
            "invalid_endpoint",
            "invalid_dependency",
        ] {
            assert!(c.contains(&expected), "{expected} missing from {c:?}");
        }
        assert!(e.to_string().starts_with("invalid manifest: "));
        let reserved = Manifest::builder("register", "R", "1.0.0")
            .build()
            .unwrap_err();
        assert_eq!(codes(&reserved), ["reserved_id"]);
        let own = Manifest::builder("me", "Me", "1.0.0")
            .dependency("me")
            .build()
            .unwrap_err();
        assert_eq!(codes(&own), ["self_dependency"]);
    }

    #[test]
    fn subscriptions_match_one_segment_per_star() {
        assert!(subscription_matches("patient.*", "patient.updated"));
        assert!(subscription_matches("*.updated", "patient.updated"));
        assert!(subscription_matches("*", "patient"));
        assert!(subscription_matches("a.b", "a.b"));
        assert!(!subscription_matches("patient.*", "patient"));
        assert!(!subscription_matches("patient.*", "patient.a.b"));
        assert!(!subscription_matches("*", "a.b"));
        assert!(!subscription_matches("a.b", "a.c"));
        let m = Manifest::builder("s", "S", "1.0.0")
            .subscriptions(["a.*", "a.*", "b"])
            .build()
            .unwrap();
        assert_eq!(m.subscriptions, ["a.*", "b"]);
        assert_eq!(
            serde_json::to_value(&m).unwrap()["subscriptions"],
            serde_json::json!(["a.*", "b"])
        );
        let e = Manifest::builder("s", "S", "1.0.0")
            .subscriptions(["Bad name", "Ok.*"])
            .build()
            .unwrap_err();
        assert_eq!(e.violations.len(), 1);
        assert_eq!(e.violations[0].path, "/subscriptions/0");
        assert_eq!(e.violations[0].code, "pattern");
    }

    #[test]
    fn wire_names() {
        assert_eq!(PluginTrait::HandlesPii.as_str(), "handles_pii");
        assert_eq!(
            serde_json::to_value(PluginTrait::RequiresEncryption).unwrap(),
            "requires_encryption"
        );
        assert_eq!(DataClass::Phi.as_str(), "phi");
        assert_eq!(
            serde_json::to_value(Contract::IdentityPlugin).unwrap(),
            "IdentityPlugin"
        );
    }
}
