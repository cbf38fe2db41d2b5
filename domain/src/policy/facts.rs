//! What the engine knows about a plugin and an event, compiled against one policy's
//! vocabulary into bit masks.

use super::*;

/// What the engine knows about a plugin, from its manifest and record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginFacts {
    /// Plugin id (for the caller's logs; rules do not look at it).
    pub id: String,
    /// Declared traits (`handles_phi`, …), any case.
    pub traits: Vec<String>,
    /// Declared data classification (`phi`, `internal`, …), any case.
    pub data_classification: Vec<String>,
    /// False while an operator has disabled the plugin.
    pub enabled: bool,
}

impl PluginFacts {
    /// The facts of a stored plugin record: traits and data classification from its
    /// (validated) manifest, `enabled` from the record.
    #[must_use]
    pub fn from_record(record: &PluginRecord) -> Self {
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            id: record.plugin_id.as_str().to_owned(),
            traits: strings(record.manifest.get("traits")),
            data_classification: strings(record.manifest.pointer("/security/data_classification")),
            enabled: record.enabled,
        }
    }

    /// The facts of a validated manifest, with `enabled` from the plugin's record.
    #[must_use]
    pub fn from_manifest(manifest: &Manifest, enabled: bool) -> Self {
        Self {
            id: manifest.id.as_str().to_owned(),
            traits: manifest
                .traits
                .iter()
                .map(|t| trait_name(*t).to_owned())
                .collect(),
            data_classification: manifest
                .security
                .data_classification
                .iter()
                .map(|c| class_name(*c).to_owned())
                .collect(),
            enabled,
        }
    }

    /// Compiles the facts against `policy`: names become bits of the policy's
    /// vocabulary (names no rule mentions cannot change a decision and are dropped).
    /// Cache the result per plugin record; recompile when the record or the policy
    /// changes (a stale one is denied, never misread).
    #[must_use]
    pub fn compile(&self, policy: &Policy) -> CompiledFacts {
        let inner = &*policy.inner;
        let implied = policy.data_traits(&self.data_classification);
        CompiledFacts {
            generation: inner.generation,
            enabled: self.enabled,
            traits: mask(&inner.trait_names, &self.traits),
            classes: mask(&inner.class_names, &self.data_classification),
            implied: implied.known,
            implied_unknown: implied.unknown,
        }
    }
}

fn trait_name(t: PluginTrait) -> &'static str {
    match t {
        PluginTrait::HandlesPhi => "handles_phi",
        PluginTrait::HandlesPii => "handles_pii",
        PluginTrait::RequiresEncryption => "requires_encryption",
        PluginTrait::ExternalService => "external_service",
        PluginTrait::AuditRequired => "audit_required",
    }
}

fn class_name(c: DataClass) -> &'static str {
    match c {
        DataClass::Public => "public",
        DataClass::Internal => "internal",
        DataClass::Confidential => "confidential",
        DataClass::Phi => "phi",
        DataClass::Pii => "pii",
    }
}

/// A plugin's facts compiled against one [`Policy`]: bit masks and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledFacts {
    pub(super) generation: u64,
    pub(super) enabled: bool,
    pub(super) traits: u64,
    pub(super) classes: u64,
    /// Its classification as data traits: what its untagged events carry by default.
    pub(super) implied: u64,
    /// Part of its classification is a data trait no rule names.
    pub(super) implied_unknown: bool,
}

/// An event's data traits compiled against one [`Policy`] (once per event, shared
/// by every subscriber's decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataTraits {
    pub(super) generation: u64,
    pub(super) known: u64,
    pub(super) unknown: bool,
}

impl DataTraits {
    /// Whether the event carries no trait at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.known == 0 && !self.unknown
    }
}
