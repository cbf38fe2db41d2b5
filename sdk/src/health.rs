//! The health a plugin reports in its heartbeats.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Health a plugin reports in its heartbeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Working normally.
    #[default]
    Healthy,
    /// Working, with reduced capacity or a failing dependency.
    Degraded,
    /// Not able to do its job.
    Unhealthy,
}

/// What [`crate::Plugin::health_check`] returns: the health and optional details. The details
/// go to the core in the heartbeat (at most 4 KiB as JSON; larger details are dropped)
/// and are neither stored nor logged there. Never put PHI, PII or secrets in them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The health.
    pub health: Health,
    /// Small, non-sensitive facts (queue depth, dependency states).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

impl HealthReport {
    /// `healthy`, no details.
    pub fn healthy() -> Self {
        Self::default()
    }

    /// `degraded`, no details.
    pub fn degraded() -> Self {
        Self {
            health: Health::Degraded,
            details: Map::new(),
        }
    }

    /// `unhealthy`, no details.
    pub fn unhealthy() -> Self {
        Self {
            health: Health::Unhealthy,
            details: Map::new(),
        }
    }

    /// Adds one detail.
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}
