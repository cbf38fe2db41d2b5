//! `AuditLog`: the tamper-evident record of every decision the core makes.
//!
//! Writing is split in two so that several replicas share one chain without
//! serialising every operation on its head:
//!
//! 1. [`AuditLog::append`] stores a **pending** entry — on a SQL store a plain insert
//!    that can share the transaction of the state change it records — with no
//!    sequence number and no hash;
//! 2. [`AuditLog::seal`], run by one chainer at a time, gives pending entries
//!    consecutive sequence numbers and chain hashes ([`crate::audit_chain`]), in
//!    batches.
//!
//! Readers ([`AuditLog::range`], [`AuditLog::query`]) see sealed entries only;
//! [`verify_log`] walks the chain.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::BoxError;
use crate::audit_chain::{
    ChainHash, ChainHead, ChainKey, ChainVerifier, EntryError, VerifyReport, truncate_to_micros,
    validate_entry,
};

/// Whether the audited operation was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Carried out.
    Success,
    /// Refused (validation, authentication, policy).
    Denied,
}

/// One audit entry.
///
/// It MUST NOT contain a token, a secret or a payload (PHI must never land in the
/// audit log): ids, codes and trait names only. Its size is bounded: every text field
/// at most [`crate::audit_chain::MAX_FIELD_BYTES`] without control characters, and
/// `details` at most [`crate::audit_chain::MAX_DETAILS_BYTES`] of canonical JSON,
/// without non-integer numbers ([`AuditEntry::validate`]). A caller that records
/// client-supplied text (ids, JSON pointers of violations) MUST bound it first — cap
/// the number of violations listed, say — or the append fails, and with it the
/// operation it records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (kept to the microsecond: stores truncate finer precision).
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

impl AuditEntry {
    /// Checks the entry's limits (see the type's docs).
    ///
    /// # Errors
    /// The first limit broken.
    pub fn validate(&self) -> Result<(), EntryError> {
        validate_entry(self).map(drop)
    }

    /// The entry as a store keeps it: `at` truncated to whole microseconds.
    pub fn normalized(mut self) -> Self {
        self.at = truncate_to_micros(self.at);
        self
    }
}

/// An entry with its place in the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SealedEntry {
    /// Sequence number: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// `HMAC-SHA-256(key, hash(seq - 1) || canonical(seq, entry))`.
    pub hash: ChainHash,
}

/// What one [`AuditLog::seal`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealReport {
    /// How many pending entries were sealed.
    pub sealed: u64,
    /// The chain's head after the call (`None`: nothing was ever sealed).
    pub head: Option<ChainHead>,
    /// Another sealer was at work, so this call sealed nothing and did not wait.
    pub busy: bool,
}

/// A read of sealed entries, for `GET /audit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Continue after this sequence number in the listing order: entries with a
    /// greater `seq` oldest-first, a smaller one newest-first. `None`: from the start
    /// (the oldest, or the newest).
    pub after: Option<u64>,
    /// At most this many entries (and never more than [`MAX_PAGE`]).
    pub limit: usize,
    /// Newest first (descending `seq`) instead of oldest first.
    pub newest_first: bool,
    /// Only entries with this actor.
    pub actor: Option<String>,
    /// Only entries with this action.
    pub action: Option<String>,
    /// Only entries with this outcome.
    pub outcome: Option<AuditOutcome>,
}

/// The most entries one `range` or `query` call returns.
pub const MAX_PAGE: usize = 10_000;

/// The most entries one `seal` call seals.
pub const MAX_SEAL_BATCH: usize = 10_000;

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log cannot be read or written; the operation may be retried.
    #[error("audit log unavailable")]
    Unavailable(#[source] BoxError),
    /// The entry breaks a limit of [`AuditEntry`]; nothing was stored.
    #[error("invalid audit entry")]
    InvalidEntry(#[from] EntryError),
    /// The sealed entry at `seq` cannot be decoded (its row was altered to values the
    /// log never writes). [`verify_log`] reports it as `malformed_entry`.
    #[error("audit entry {seq} cannot be decoded")]
    CorruptEntry {
        /// Its sequence number.
        seq: u64,
    },
}

/// The audit log: pending entries, a single chainer that seals them, and reads of the
/// sealed chain.
///
/// Concurrency rule for every adapter: appends from any number of tasks and
/// processes MUST each be stored exactly once; sealing MUST assign every pending entry
/// exactly one sequence number, consecutive from the head, with no gap and no fork
/// (two entries with one number), whatever the number of concurrent sealers and
/// processes.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Stores `entry` as pending (unsealed), durably, with `at` truncated to whole
    /// microseconds. Entries appended one after another (each append returned before
    /// the next began) MUST be sealed in that order.
    ///
    /// # Errors
    /// MUST return [`AuditError::InvalidEntry`], storing nothing, if the entry breaks
    /// a limit ([`AuditEntry::validate`]). MUST return [`AuditError::Unavailable`] if
    /// the entry was not stored; the caller then fails the operation it records (fail
    /// closed).
    async fn append(&self, entry: AuditEntry) -> Result<(), AuditError>;

    /// Seals up to `limit` (at most [`MAX_SEAL_BATCH`]) pending entries, oldest append
    /// first: the first gets the head's `seq + 1` (1 on an empty chain), the next
    /// `seq + 2`, …, each hash chained on the previous one with `key`
    /// ([`crate::audit_chain::seal_entries`]). The batch MUST be atomic: every entry
    /// of it sealed and no longer pending, or none.
    ///
    /// At most one sealer MUST work on a log at a time, across processes for a shared
    /// backend; a call that finds another at work MUST return promptly with
    /// `busy: true` and `sealed: 0` instead of waiting for it. Nothing pending is not
    /// an error (`sealed: 0`).
    ///
    /// # Errors
    /// MUST return [`AuditError::Unavailable`], sealing nothing, if the backend fails
    /// or a pending entry cannot be decoded (sealing then stalls, visibly, in
    /// [`AuditLog::pending`]).
    async fn seal(&self, key: &ChainKey, limit: usize) -> Result<SealReport, AuditError>;

    /// Sealed entries with `seq >= from_seq`, in ascending `seq`, at most `limit`
    /// (and [`MAX_PAGE`]). Returns what is stored, without checking it: a deleted
    /// entry is simply absent (verification reports the gap).
    ///
    /// # Errors
    /// [`AuditError::CorruptEntry`] for the first entry of the page that cannot be
    /// decoded; [`AuditError::Unavailable`].
    async fn range(&self, from_seq: u64, limit: usize) -> Result<Vec<SealedEntry>, AuditError>;

    /// The last sealed entry's sequence number and hash; `None` if nothing was sealed.
    ///
    /// # Errors
    /// [`AuditError::CorruptEntry`]; [`AuditError::Unavailable`].
    async fn head(&self) -> Result<Option<ChainHead>, AuditError>;

    /// How many entries are appended but not sealed yet (the sealing lag `/ready`
    /// reports).
    ///
    /// # Errors
    /// [`AuditError::Unavailable`].
    async fn pending(&self) -> Result<u64, AuditError>;

    /// Sealed entries matching every filter of `query`, in its order, after its
    /// cursor, at most its `limit` (and [`MAX_PAGE`]).
    ///
    /// # Errors
    /// [`AuditError::CorruptEntry`]; [`AuditError::Unavailable`].
    async fn query(&self, query: &AuditQuery) -> Result<Vec<SealedEntry>, AuditError>;
}

/// Walks the sealed chain of `log` with `verifier` (from the genesis, or resumed, and
/// with a checkpoint if it has one) to its end, `page` entries per read, and reports
/// "intact up to N" or the first bad sequence number. An entry the store cannot decode
/// is reported as `malformed_entry` at its place.
///
/// # Errors
/// [`AuditError::Unavailable`] if the log cannot be read.
pub async fn verify_log(
    log: &dyn AuditLog,
    mut verifier: ChainVerifier,
    page: usize,
) -> Result<VerifyReport, AuditError> {
    let page = page.clamp(1, MAX_PAGE);
    loop {
        let from = verifier.next_seq();
        match log.range(from, page).await {
            Ok(entries) => {
                if entries.is_empty() {
                    return Ok(verifier.finish());
                }
                if !verifier.feed(&entries) {
                    return Ok(verifier.report());
                }
            }
            Err(AuditError::CorruptEntry { seq }) => {
                // Verify what precedes the undecodable entry, then report it.
                if seq > from {
                    let before = usize::try_from(seq - from).unwrap_or(MAX_PAGE);
                    match log.range(from, before.min(page)).await {
                        Ok(entries) => {
                            let entries: Vec<_> =
                                entries.into_iter().filter(|e| e.seq < seq).collect();
                            if !verifier.feed(&entries) {
                                return Ok(verifier.report());
                            }
                            if verifier.next_seq() < seq && !entries.is_empty() {
                                // More pages lie before it; carry on reading.
                                continue;
                            }
                        }
                        Err(AuditError::CorruptEntry { seq: earlier }) => {
                            verifier.malformed(earlier);
                            return Ok(verifier.report());
                        }
                        Err(e) => return Err(e),
                    }
                }
                verifier.malformed(seq);
                return Ok(verifier.report());
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_chain::{ChainKey, seal_entries};

    /// A sealed entry as one JSON line (for a SIEM export): flat, hash in hex.
    #[test]
    fn sealed_entries_serialize_flat() {
        let key = ChainKey::new(&[7; 32]).unwrap();
        let entry = AuditEntry {
            at: OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(),
            actor: "admin".into(),
            action: "plugin.disable".into(),
            target: "p1".into(),
            outcome: AuditOutcome::Success,
            reason: "operator".into(),
            trace_id: "t1".into(),
            details: serde_json::json!({"why": "maintenance"}),
        };
        let sealed = seal_entries(&key, None, [entry]).unwrap().remove(0);
        let v = serde_json::to_value(&sealed).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["at"], "2026-01-01T00:00:00Z");
        assert_eq!(v["outcome"], "success");
        assert_eq!(v["hash"], sealed.hash.to_hex());
        assert_eq!(v["details"]["why"], "maintenance");
        let back: SealedEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, sealed);
    }
}
