//! A decision of the engine: its effect, the rule that decided and a reason code.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{JsonPointer, sanitize};

/// What the engine decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Deliver (or accept) as is.
    Allow,
    /// Do not deliver (or refuse the publication).
    Deny,
    /// Deliver after removing these fields of the payload ([`sanitize`]); never empty.
    Sanitize {
        /// JSON Pointers into the payload.
        fields: Arc<[JsonPointer]>,
    },
}

/// A decision: the effect, the rule that decided it and a stable reason code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The effect.
    #[serde(flatten)]
    pub effect: Effect,
    /// Id of the rule that decided (a policy rule, or a `core.*` check).
    pub rule: Arc<str>,
    /// Machine-readable reason code.
    pub reason: Arc<str>,
}

impl Decision {
    pub(super) fn new(effect: Effect, rule: &str, reason: &str) -> Self {
        Self {
            effect,
            rule: Arc::from(rule),
            reason: Arc::from(reason),
        }
    }

    /// Whether the effect is `Allow`.
    #[must_use]
    pub fn is_allow(&self) -> bool {
        matches!(self.effect, Effect::Allow)
    }

    /// Whether the effect is `Deny`.
    #[must_use]
    pub fn is_deny(&self) -> bool {
        matches!(self.effect, Effect::Deny)
    }

    /// The fields to remove, when the effect is `Sanitize`.
    #[must_use]
    pub fn sanitize_fields(&self) -> Option<&[JsonPointer]> {
        match &self.effect {
            Effect::Sanitize { fields } => Some(fields),
            _ => None,
        }
    }

    /// Applies the decision to `payload`: removes the fields of a `Sanitize` and
    /// returns how many were present; does nothing for `Allow` or `Deny` (a denied
    /// payload is not delivered at all).
    pub fn apply(&self, payload: &mut Value) -> usize {
        self.sanitize_fields()
            .map_or(0, |fields| sanitize(payload, fields))
    }
}
