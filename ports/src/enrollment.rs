//! One-time enrollment tokens: a credential an operator mints for one plugin id, which
//! registers that id once. The store keeps the token's SHA-256, never the token.

use time::OffsetDateTime;

use crate::plugin::PluginId;

/// An enrollment as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// Its public id (in audit entries and answers; not a credential).
    pub id: String,
    /// The only plugin id it registers.
    pub plugin_id: PluginId,
    /// Lowercase hex SHA-256 of the token.
    pub token_hash: String,
    /// When it was minted.
    pub created_at: OffsetDateTime,
    /// It registers nothing from this instant on.
    pub expires_at: OffsetDateTime,
    /// Who minted it (`admin`, or an operator's name).
    pub created_by: String,
    /// When a registration used it (`None`: unused).
    pub used_at: Option<OffsetDateTime>,
}
