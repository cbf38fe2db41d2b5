//! What an event without data traits is taken to carry (the policy file's
//! `"untagged"`): by default the publisher's whole data classification, so an
//! untagged event is decided — and sanitised — exactly as if it had been tagged with
//! it, and the PHI boundary never rests on every publisher tagging every event.

use serde::{Deserialize, Serialize};

/// How the engine treats an event that names no data trait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Untagged {
    /// As carrying every class of the publisher's `security.data_classification`
    /// (a publisher classified `["phi", "internal"]` publishes untagged events as
    /// `phi` + `internal`). A publisher with no classification cannot publish untagged
    /// events. The default.
    #[default]
    PublisherClassification,
    /// As carrying the data trait `public` (the policy must have a rule for it),
    /// whatever the publisher's classification: an operator's explicit choice that
    /// untagged events are public.
    Public,
    /// Refused: every event must name its data traits.
    Deny,
}

impl Untagged {
    /// The policy file's spelling: `publisher_classification`, `public`, `deny`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublisherClassification => "publisher_classification",
            Self::Public => "public",
            Self::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Untagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
