//! `PluginStore`: where plugin records live.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::BoxError;
use crate::audit::AuditEntry;
use crate::enrollment::Enrollment;
use crate::plugin::{Health, PluginId};
use crate::record::{BufferedBeat, HeartbeatRefused, PluginRecord, Swept};

/// Errors of every [`PluginStore`] operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No record with this id.
    #[error("plugin not found")]
    NotFound,
    /// A record with this id already exists (a unique-key violation in the backend).
    #[error("a plugin with this id already exists")]
    Conflict,
    /// The record exists but a condition of a conditional write did not hold
    /// (its version, its token id, or its enabled flag changed underneath).
    #[error("the record changed; the conditional write was not applied")]
    PreconditionFailed,
    /// The backend cannot be reached or failed; the operation may be retried.
    #[error("plugin store unavailable")]
    Unavailable(#[source] BoxError),
}

impl StoreError {
    /// Whether this is a uniqueness conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict)
    }
}

/// A heartbeat as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatOutcome {
    /// The record after the heartbeat.
    pub record: PluginRecord,
    /// Whether the plugin was `stale` just before (it has recovered).
    pub recovered: bool,
}

/// A lifecycle event the store wrote in the same atomic write as the transition it
/// announces (`plugin.stale` and `plugin.deregistered`, by [`PluginStore::sweep`]),
/// kept until acknowledged: if the core dies between the write and the publication,
/// another sweep publishes it (at least once).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboxEntry {
    /// `plugin.stale` or `plugin.deregistered`.
    pub event_type: String,
    /// The plugin concerned.
    pub plugin_id: PluginId,
    /// The [`PluginRecord::registration_key`] of the record concerned.
    pub registration: String,
    /// The record's `version` after the transition (before it, for a deletion).
    pub version: u64,
    /// When it was written, or last claimed.
    pub at: OffsetDateTime,
}

impl OutboxEntry {
    /// The entry of a sweep step's plugin transition, if it has one (at `at`).
    pub fn of(swept: &Swept, at: OffsetDateTime) -> Option<Self> {
        swept.event.map(|event_type| Self {
            event_type: event_type.to_owned(),
            plugin_id: swept.record.plugin_id.clone(),
            registration: swept.record.registration_key(),
            version: swept.record.version,
            at,
        })
    }
}

impl From<HeartbeatRefused> for StoreError {
    fn from(_: HeartbeatRefused) -> Self {
        Self::PreconditionFailed
    }
}

/// How many plugins are alive and how many of them are past their deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LivenessCounts {
    /// Enabled plugins that are `registered` or `active`.
    pub live: u64,
    /// Of those, how many have `next_deadline <= due_by`.
    pub due: u64,
}

/// Durable storage of [`PluginRecord`]s, keyed by [`PluginId`].
///
/// Concurrency rule (for every adapter): every write is atomic and conditional where
/// this contract says so; a write never resurrects a deleted record, never lowers a
/// record's `version`, and never applies a heartbeat carrying a revoked token id.
/// Uniqueness of ids MUST be enforced by the backend itself (a primary key), never by
/// a read followed by a write.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait PluginStore: Send + Sync {
    /// Inserts a new record and returns it as stored, with `version` set to 1.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] if a record with this id exists; of several
    /// concurrent inserts of one id exactly one MUST succeed.
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn insert(&self, record: PluginRecord) -> Result<PluginRecord, StoreError>;

    /// Returns the record with this id, or `None`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn get(&self, id: &PluginId) -> Result<Option<PluginRecord>, StoreError>;

    /// Returns up to `limit` records with ids strictly greater than `after` (all if
    /// `None`), sorted by id ascending (byte order).
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn list(
        &self,
        after: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<PluginRecord>, StoreError>;

    /// Replaces the record with `record.plugin_id` if and only if its stored `version`
    /// equals `expected_version`; the stored version becomes `expected_version + 1`,
    /// and the stored record is returned.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if no such record exists (it MUST NOT be
    /// created), [`StoreError::PreconditionFailed`] if the version differs (nothing is
    /// written), [`StoreError::Unavailable`] if the backend fails.
    async fn replace(
        &self,
        record: PluginRecord,
        expected_version: u64,
    ) -> Result<PluginRecord, StoreError>;

    /// Records a heartbeat of the instance holding token `token_jti` in one atomic
    /// conditional write, as [`PluginRecord::apply_heartbeat`] defines it: only if the
    /// record exists, is enabled and an instance holds that token; bumps `version`, and
    /// returns the stored record and whether the plugin was `stale` just before.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if no such record exists,
    /// [`StoreError::PreconditionFailed`] if no instance holds the token or the plugin
    /// is disabled (nothing is written), [`StoreError::Unavailable`] if the backend
    /// fails.
    async fn record_heartbeat(
        &self,
        id: &PluginId,
        token_jti: &str,
        health: Health,
        at: OffsetDateTime,
        next_deadline: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError>;

    /// Writes heartbeats a core answered before writing them: each record concerned is
    /// read, every beat of it applied ([`PluginRecord::apply_buffered_beat`]), and
    /// written with its version bumped by one atomic write conditional on the version
    /// read (read again and retried if another write came first). Beats that no longer
    /// apply are dropped. A backend writes a batch in as few statements as it can.
    /// Returns how many records changed.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails (what was written
    /// stays written; writing a beat again changes nothing, so the caller may retry
    /// them all).
    async fn record_heartbeats(&self, beats: &[BufferedBeat]) -> Result<u64, StoreError>;

    /// Deletes the record; if `expected_version` is given, only if its `version` equals
    /// it.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if no such record exists,
    /// [`StoreError::PreconditionFailed`] if `expected_version` differs (nothing
    /// deleted), [`StoreError::Unavailable`] if the backend fails.
    async fn delete(&self, id: &PluginId, expected_version: Option<u64>) -> Result<(), StoreError>;

    /// The earliest `next_deadline` of any record, or `None` if no record has one.
    /// MUST cost about the same whatever the number of records (an index lookup).
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn earliest_deadline(&self) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Counts the enabled `registered`/`active` records, and those of them whose
    /// `next_deadline <= due_by`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn liveness_counts(&self, due_by: OffsetDateTime) -> Result<LivenessCounts, StoreError>;

    /// One sweep step ([`PluginRecord::sweep_step`]) of up to `limit` enabled records
    /// whose `next_deadline <= now` (earliest first): their instances past their
    /// deadline go stale (deadline moved on by `deregister_in`; `None`: cleared) or, if
    /// stale already, are removed; a record left without instances is deleted. Each
    /// record changed is written (version bumped) or deleted in one atomic conditional
    /// write with, when the plugin as a whole went stale or was deregistered, its
    /// [`OutboxEntry`] (from [`OutboxEntry::of`], at `now`). Each step is applied by
    /// exactly one of several concurrent callers (across processes sharing the
    /// backend); a record another write changed meanwhile is left for the next sweep.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails (what was written
    /// before stays written).
    async fn sweep(
        &self,
        now: OffsetDateTime,
        deregister_in: Option<std::time::Duration>,
        limit: usize,
    ) -> Result<Vec<Swept>, StoreError>;

    /// Claims up to `limit` outbox entries written (or last claimed) at or before
    /// `older_than`, oldest first: sets their `at` to `now` and returns them. Of
    /// several concurrent callers, each entry goes to exactly one.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails (nothing claimed).
    async fn claim_outbox(
        &self,
        older_than: OffsetDateTime,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Deletes these outbox entries (matched by type, plugin, registration and
    /// version; `at` is ignored): their events have been published. Entries that are
    /// gone already are skipped.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn ack_outbox(&self, entries: &[OutboxEntry]) -> Result<(), StoreError>;

    /// Revokes the current token of every instance of every record whose token was
    /// issued at or before `before`, or at an unknown time
    /// ([`PluginRecord::revoke_issued_before`]): each record changed in one atomic
    /// conditional write (retried if another write came first), version bumped. Tokens
    /// revoked already are left alone. Returns how many records changed; when it
    /// returns, no token issued at or before `before` works.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails (what was revoked
    /// before stays revoked).
    async fn revoke_tokens_issued_before(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Stores a new, unused enrollment.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] if its id or token hash exists,
    /// [`StoreError::Unavailable`] if the backend fails.
    async fn create_enrollment(&self, enrollment: &Enrollment) -> Result<(), StoreError>;

    /// The enrollment whose token has this hash, used or not, expired or not.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn enrollment(&self, token_hash: &str) -> Result<Option<Enrollment>, StoreError>;

    /// Marks the enrollment with this token hash used at `now`, in one atomic
    /// conditional write: only if it is unused and `now < expires_at`. Of several
    /// concurrent callers exactly one succeeds. Returns it as stored.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if there is none,
    /// [`StoreError::PreconditionFailed`] if it is used or expired (nothing written),
    /// [`StoreError::Unavailable`] if the backend fails.
    async fn use_enrollment(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Enrollment, StoreError>;

    /// Makes an enrollment used at `used_at` unused again (the registration it was used
    /// for failed). A no-op if it is not used at exactly that instant.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn release_enrollment(
        &self,
        token_hash: &str,
        used_at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Up to `limit` enrollments, used or not, expired or not, newest first
    /// (`created_at` descending, then id ascending); only those for `plugin_id` if given.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn list_enrollments(
        &self,
        plugin_id: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<Enrollment>, StoreError>;

    /// Deletes the enrollment with this id (its public id, not the token's hash) in one
    /// atomic conditional write, only if it is unused; returns it as it was. Of several
    /// concurrent callers (and a concurrent [`PluginStore::use_enrollment`]) exactly one
    /// succeeds.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if there is none,
    /// [`StoreError::PreconditionFailed`] if it is used (nothing deleted),
    /// [`StoreError::Unavailable`] if the backend fails.
    async fn cancel_enrollment(&self, id: &str) -> Result<Enrollment, StoreError>;

    /// Deletes every enrollment that ended before `ended_before`: used before it, or
    /// expiring before it. Returns how many were deleted.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn purge_enrollments(&self, ended_before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Checks that the backend answers (used by `/ready`).
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if it does not.
    async fn ping(&self) -> Result<(), StoreError>;

    /// [`PluginStore::insert`] and, in the same transaction, `entry` as a pending
    /// (unsealed) entry of the audit log kept in this store's database: both are
    /// written or neither is. A store that keeps no audit log MUST refuse (the default
    /// does, with [`StoreError::Unavailable`]): an entry is never silently dropped.
    ///
    /// # Errors
    /// As [`PluginStore::insert`]; [`StoreError::Unavailable`] if the entry cannot be
    /// written (then the record is not written either).
    async fn insert_audited(
        &self,
        record: PluginRecord,
        entry: &AuditEntry,
    ) -> Result<PluginRecord, StoreError> {
        let _ = (record, entry);
        Err(StoreError::Unavailable(
            "this store does not keep the audit log".into(),
        ))
    }

    /// [`PluginStore::replace`] with `entry` in the same transaction (see
    /// [`PluginStore::insert_audited`]); nothing is written when the precondition fails.
    ///
    /// # Errors
    /// As [`PluginStore::replace`] and [`PluginStore::insert_audited`].
    async fn replace_audited(
        &self,
        record: PluginRecord,
        expected_version: u64,
        entry: &AuditEntry,
    ) -> Result<PluginRecord, StoreError> {
        let _ = (record, expected_version, entry);
        Err(StoreError::Unavailable(
            "this store does not keep the audit log".into(),
        ))
    }

    /// [`PluginStore::delete`] with `entry` in the same transaction (see
    /// [`PluginStore::insert_audited`]); nothing is written when the precondition fails.
    ///
    /// # Errors
    /// As [`PluginStore::delete`] and [`PluginStore::insert_audited`].
    async fn delete_audited(
        &self,
        id: &PluginId,
        expected_version: Option<u64>,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        let _ = (id, expected_version, entry);
        Err(StoreError::Unavailable(
            "this store does not keep the audit log".into(),
        ))
    }
}
