//! Plugin identity and the record the store keeps for each registered plugin.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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

/// What the store keeps for one registered plugin.
///
/// It holds the id (`jti`) of the plugin's one current token, never the token itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The plugin's id (also `manifest.id`).
    pub plugin_id: PluginId,
    /// The manifest as the plugin sent it, validated, unknown members kept. Shared:
    /// records are cloned on every read, the manifest need not be.
    pub manifest: std::sync::Arc<serde_json::Value>,
    /// Liveness.
    pub status: Liveness,
    /// Self-reported health.
    pub health: Health,
    /// False while an operator has disabled the plugin.
    pub enabled: bool,
    /// Why an operator disabled it.
    pub disabled_reason: Option<String>,
    /// First registration of this id (kept across re-registrations).
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// Last accepted heartbeat.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<OffsetDateTime>,
    /// The `jti` of the plugin's one valid token. A token with any other `jti` is revoked.
    pub token_jti: String,
    /// When the sweeper next has to look at this record: for a `registered` or
    /// `active` plugin the moment it goes stale, for a `stale` one the moment it is
    /// deregistered; `None` when nothing is due (disabled, or stale with automatic
    /// deregistration off). Indexed by every store, so a sweep costs what expires.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub next_deadline: Option<OffsetDateTime>,
    /// Optimistic-concurrency version: 1 on insert, +1 on every write.
    pub version: u64,
}
