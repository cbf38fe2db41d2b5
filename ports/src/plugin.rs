//! Plugin identity and the record the store keeps for each registered plugin.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Longest plugin id the manifest schema accepts (a DNS label's length).
pub const MAX_PLUGIN_ID_LEN: usize = 63;

/// A plugin id: 1 to 63 characters of `[a-z0-9-]`, as the manifest schema requires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PluginId(String);

/// The string is not a valid plugin id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin id must be 1 to 63 characters of lowercase letters, digits and '-'")]
pub struct InvalidPluginId;

impl PluginId {
    /// Parses and checks an id.
    ///
    /// # Errors
    /// [`InvalidPluginId`] unless `id` is 1..=63 characters of `[a-z0-9-]`.
    pub fn parse(id: &str) -> Result<Self, InvalidPluginId> {
        if Self::is_valid(id) {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidPluginId)
        }
    }

    /// Whether `id` is a valid plugin id.
    pub fn is_valid(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= MAX_PLUGIN_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PluginId {
    type Err = InvalidPluginId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for PluginId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Liveness of a registered plugin, driven by its heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Registered, no heartbeat yet.
    Registered,
    /// Heartbeating within its deadline.
    Active,
    /// Missed its heartbeat deadline.
    Stale,
}

impl Liveness {
    /// Whether the plugin counts as alive (`registered` or `active`).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Registered | Self::Active)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Active => "active",
            Self::Stale => "stale",
        }
    }
}

impl FromStr for Liveness {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "registered" => Ok(Self::Registered),
            "active" => Ok(Self::Active),
            "stale" => Ok(Self::Stale),
            _ => Err(()),
        }
    }
}

/// Health the plugin reports about itself in its heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No heartbeat has reported a health yet.
    Unknown,
    /// Working.
    Healthy,
    /// Working with reduced capacity.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl Health {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl FromStr for Health {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "unknown" => Ok(Self::Unknown),
            "healthy" => Ok(Self::Healthy),
            "degraded" => Ok(Self::Degraded),
            "unhealthy" => Ok(Self::Unhealthy),
            _ => Err(()),
        }
    }
}

/// A plugin's manifest as a [`PluginRecord`] carries it: validated JSON, shared by every
/// clone of the record.
///
/// Made from a tree ([`StoredManifest::from_value`], what the registry does with a
/// manifest it has just validated), it keeps only the compact JSON text — a few hundred
/// bytes where the `serde_json::Value` tree of the same manifest takes several KB of
/// maps and strings — and parses the tree again the first time a member is read
/// (through `Deref`), keeping it from then on. Made from stored text
/// ([`StoredManifest::from_json`], what SQL stores do), it keeps the tree it parsed.
/// Either way it reads, compares and serialises as the same JSON value: `Serialize`
/// writes the kept text as is, or the tree.
#[derive(Clone)]
pub struct StoredManifest(Arc<Forms>);

/// The two forms of a manifest; at least one is set, and both say the same. The text
/// is always `serde_json`'s compact encoding of a tree.
struct Forms {
    json: OnceLock<Box<str>>,
    tree: OnceLock<Value>,
}

impl StoredManifest {
    /// The manifest `value` kept as compact JSON text; its tree is not kept.
    pub fn from_value(value: &Value) -> Self {
        // `serde_json::to_string` writes straight into a buffer; `Value::to_string`
        // (Display) goes through `fmt::Write` piece by piece, about twice the work.
        // Serialising a `Value` cannot fail; the fallback is the same text.
        let json = serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
        Self::with(OnceLock::from(json.into_boxed_str()), OnceLock::new())
    }

    /// The manifest `tree`, kept as a tree (its text is written when serialised).
    pub fn from_tree(tree: Value) -> Self {
        Self::with(OnceLock::new(), OnceLock::from(tree))
    }

    fn with(json: OnceLock<Box<str>>, tree: OnceLock<Value>) -> Self {
        Self(Arc::new(Forms { json, tree }))
    }

    /// The manifest stored as JSON `text`, parsed (and kept as its tree).
    ///
    /// # Errors
    /// The text is not JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text).map(Self::from_tree)
    }

    /// The manifest as a JSON tree (parsed from the kept text on first use).
    pub fn value(&self) -> &Value {
        self.0.tree.get_or_init(|| {
            self.0
                .json
                .get()
                .and_then(|json| serde_json::from_str(json).ok())
                // Unreachable: the text was written by `serde_json` from a tree.
                .unwrap_or(Value::Null)
        })
    }

    /// A copy of this manifest changed by `edit`, kept as text like
    /// [`StoredManifest::from_value`]'s.
    #[must_use]
    pub fn edited(&self, edit: impl FnOnce(&mut Value)) -> Self {
        let mut tree = self.value().clone();
        edit(&mut tree);
        Self::from_value(&tree)
    }

    /// The manifest as compact JSON text.
    pub fn to_json(&self) -> Cow<'_, str> {
        match self.0.json.get() {
            Some(json) => Cow::Borrowed(json),
            None => Cow::Owned(
                serde_json::to_string(self.value()).unwrap_or_else(|_| self.value().to_string()),
            ),
        }
    }
}

impl Deref for StoredManifest {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl PartialEq for StoredManifest {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.value() == other.value()
    }
}

impl fmt::Debug for StoredManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl Serialize for StoredManifest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.json.get() {
            // Written as is: `RawValue` checks the text's syntax (no tree is built).
            Some(json) => serde_json::from_str::<&RawValue>(json)
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
            None => self.value().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for StoredManifest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from_tree)
    }
}

/// The `token_jti` of a plugin whose tokens were revoked by time: no issuer makes a
/// token with this id, and the core refuses a token that carries it.
pub const REVOKED_JTI: &str = "-";

/// Traits whose declaration an operator must approve in production before the plugin
/// takes part: it handles PHI, or it reaches services outside the platform.
pub const SENSITIVE_TRAITS: &[&str] = &["handles_phi", "external_service"];

/// The sensitive traits a manifest declares, in [`SENSITIVE_TRAITS`] order.
pub fn sensitive_traits_of(manifest: &Value) -> Vec<String> {
    let declared = manifest.get("traits").and_then(Value::as_array);
    SENSITIVE_TRAITS
        .iter()
        .filter(|t| declared.is_some_and(|d| d.iter().any(|v| v.as_str() == Some(**t))))
        .map(|t| (*t).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Value {
        json!({
            "id": "user-management",
            "name": "User \"Management\"\n",
            "version": "1.0.0",
            "traits": ["handles_pii", "audit_required"],
            "security": {"authentication_required": true, "data_classification": ["pii"]},
            "extra": {"kept": [1, 2.5, null, false, "é"]}
        })
    }

    #[test]
    fn from_value_keeps_text_and_reads_as_the_same_value() {
        let m = StoredManifest::from_value(&manifest());
        assert!(m.0.json.get().is_some());
        assert!(m.0.tree.get().is_none(), "the tree is not kept");
        assert_eq!(m.to_json(), serde_json::to_string(&manifest()).unwrap());
        assert_eq!(serde_json::to_string(&m).unwrap(), m.to_json());
        // Reading a member parses the text once and keeps the tree.
        assert_eq!(m["security"]["data_classification"][0], "pii");
        assert!(m.0.tree.get().is_some());
        assert_eq!(*m.value(), manifest());
        // Clones share both forms.
        let c = m.clone();
        assert!(Arc::ptr_eq(&m.0, &c.0));
    }

    #[test]
    fn every_form_reads_compares_and_serialises_alike() {
        let text = StoredManifest::from_value(&manifest());
        let tree = StoredManifest::from_tree(manifest());
        let spaced = serde_json::to_string_pretty(&manifest()).unwrap();
        let parsed = StoredManifest::from_json(&spaced).unwrap();
        let round: StoredManifest =
            serde_json::from_str(&serde_json::to_string(&text).unwrap()).unwrap();
        for m in [&text, &tree, &parsed, &round] {
            assert_eq!(*m.value(), manifest());
            assert_eq!(m, &text);
            assert_eq!(
                serde_json::from_str::<Value>(&serde_json::to_string(m).unwrap()).unwrap(),
                manifest()
            );
            assert_eq!(
                serde_json::from_str::<Value>(&m.to_json()).unwrap(),
                manifest()
            );
            assert_eq!(serde_json::to_value(m).unwrap(), manifest());
            assert_eq!(format!("{m:?}"), m.to_json());
        }
        assert_ne!(text, text.edited(|v| v["version"] = "2.0.0".into()));
        assert!(StoredManifest::from_json("{\"id\":").is_err());
    }

    #[test]
    fn edited_changes_a_copy() {
        let m = StoredManifest::from_value(&manifest());
        let e = m.edited(|v| v["version"] = "2.0.0".into());
        assert!(e.0.tree.get().is_none(), "an edited copy is kept as text");
        assert_eq!(m["version"], "1.0.0");
        assert_eq!(e["version"], "2.0.0");
        assert_eq!(e["name"], m["name"]);
    }
}
