//! `AuditLog`: the record of every decision the core makes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::BoxError;

/// Whether the audited operation was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Carried out.
    Success,
    /// Refused (validation, authentication, policy).
    Denied,
}

/// One audit entry. It MUST NOT contain a token, a secret or a payload: ids, codes and
/// trait names only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who: a plugin id, `admin`, `anonymous` or `system`.
    pub actor: String,
    /// What, e.g. `plugin.register`.
    pub action: String,
    /// On what: usually a plugin id.
    pub target: String,
    /// Carried out or refused.
    pub outcome: AuditOutcome,
    /// A stable reason code, e.g. `registered`, `invalid_manifest`.
    pub reason: String,
    /// The request's trace id.
    pub trace_id: String,
    /// Small structured details (violation codes, …).
    pub details: serde_json::Value,
}

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log cannot be written.
    #[error("audit log unavailable")]
    Unavailable(#[source] BoxError),
}

/// Appends audit entries.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends one entry durably, after every entry appended before it by this process.
    ///
    /// # Errors
    /// MUST return [`AuditError::Unavailable`] if the entry was not stored; the caller
    /// then fails the operation it records (fail closed).
    async fn append(&self, entry: AuditEntry) -> Result<(), AuditError>;
}
