//! `AuditLog`: the tamper-evident record of every decision the core makes.
//!
//! Writing is split in two so that several replicas share one chain without
//! serialising every operation on its head:
//!
//! 1. [`AuditLog::append`] stores a **pending** entry — on a SQL store a plain insert
//!    that can share the transaction of the state change it records — with no
//!    sequence number and no hash;
//! 2. [`AuditLog::seal`], run by one chainer at a time, gives pending entries
//!    consecutive sequence numbers and chain hashes ([`ChainHasher`], [`seal_entries`]), in
//!    batches.
//!
//! Readers ([`AuditLog::range`], [`AuditLog::query`]) see sealed entries only;
//! `vivified_domain::audit_chain::verify_log` walks the chain.

use async_trait::async_trait;

mod entry;
mod keys;

pub use entry::{
    AuditEntry, AuditOutcome, ChainHash, ChainHead, EntryError, InvalidHash, MAX_DETAILS_BYTES,
    MAX_DETAILS_DEPTH, MAX_FIELD_BYTES, SealedEntry, canonical_details, from_micros, outcome_str,
    parse_outcome, to_micros, truncate_to_micros, validate_entry,
};

pub use keys::{ChainKeyRing, KEY_ROTATED_ACTION, SealPlan, is_authentic_in};

use crate::BoxError;

/// A checkpoint as an audit log keeps it beside its chain: the head it vouches for
/// and a MAC over it under the chain key ([`ChainHasher::checkpoint_mac`]; the
/// domain's `Checkpoint` is the same statement, written `SEQ:HASH:MAC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainMark {
    /// The position vouched for.
    pub head: ChainHead,
    /// The MAC over it.
    pub mac: ChainHash,
}

impl ChainMark {
    /// The mark of `head` under `hasher`'s key.
    pub fn of(hasher: &dyn ChainHasher, head: ChainHead) -> Self {
        Self {
            head,
            mac: hasher.checkpoint_mac(&head),
        }
    }
}

/// One place where a log keeps its checkpoint, and what is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Where, for an operator: `table audit_checkpoint`, `file /var/lib/…`.
    pub place: String,
    /// What it holds; `None` when something is there that is not a checkpoint.
    pub mark: Option<ChainMark>,
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
    /// log never writes). `verify_log` reports it as `malformed_entry`.
    #[error("audit entry {seq} cannot be decoded")]
    CorruptEntry {
        /// Its sequence number.
        seq: u64,
    },
    /// The chain ends before the checkpoint the log stored with an earlier seal:
    /// entries were cut from its end. Sealing stops (their sequence numbers are never
    /// reused) until the entries are restored.
    #[error(
        "the audit chain ends at seq {head}, before its stored checkpoint at seq {checkpoint}: entries were cut from its end"
    )]
    BehindCheckpoint {
        /// The chain's last sequence number (0: empty).
        head: u64,
        /// The stored checkpoint's sequence number.
        checkpoint: u64,
    },
    /// The chain's head was not sealed under any key this sealer holds ([`SealPlan`]):
    /// another replica seals with a newer key, or the checkpoint stored at the head was
    /// altered. Nothing is sealed (pending entries wait) until the sealer is given the
    /// key in force.
    #[error(
        "the audit chain's head (seq {seq}) is not sealed under any audit key this core holds: another replica seals with a newer VIVIFIED_AUDIT_KEY (give this one that key, with its own in VIVIFIED_AUDIT_PREVIOUS_KEYS), or the stored checkpoint was altered; nothing is sealed until then"
    )]
    UnknownKey {
        /// The head's sequence number.
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
    /// `seq + 2`, …, each hash chained on the previous one as the [`SealPlan`] of
    /// `keys` says (which, on a rotation, seals one more entry first: the
    /// [`KEY_ROTATED_ACTION`] entry). The batch MUST be atomic: every entry
    /// of it sealed and no longer pending, or none.
    ///
    /// At most one sealer MUST work on a log at a time, across processes for a shared
    /// backend; a call that finds another at work MUST return promptly with
    /// `busy: true` and `sealed: 0` instead of waiting for it. Nothing pending is not
    /// an error (`sealed: 0`).
    ///
    /// A seal that sealed entries MUST also store the new head's checkpoint
    /// ([`SealPlan::checkpoint`]) outside the entries, in the batch's transaction where
    /// the backend has them. Before numbering anything it MUST plan the seal with
    /// [`SealPlan::new`] from the head and every checkpoint it keeps, inside its lock.
    ///
    /// # Errors
    /// MUST return [`AuditError::Unavailable`], sealing nothing, if the backend fails
    /// or a pending entry cannot be decoded (sealing then stalls, visibly, in
    /// [`AuditLog::pending`]); [`AuditError::BehindCheckpoint`] and
    /// [`AuditError::UnknownKey`] from the plan, sealing nothing.
    // The explicit `'static` is for mockall's mock; the parentheses it needs trip a
    // lint inside `async_trait`'s expansion.
    #[allow(unused_parens)]
    async fn seal(
        &self,
        keys: &(dyn ChainKeyRing + 'static),
        limit: usize,
    ) -> Result<SealReport, AuditError>;

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

    /// The checkpoints the log keeps of its chain outside the entries, one per place
    /// (a table row, a file), as stored: the caller checks them
    /// ([`ChainHasher::is_authentic`]). Empty before the first seal.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`].
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError>;
}

/// Computes chain hashes: what [`AuditLog::seal`] chains entries with. The domain's
/// audit chain (`vivified_domain::audit_chain::ChainKey`, HMAC-SHA-256 under the
/// configured key) implements it; adapters call it and never hash entries themselves,
/// so every backend chains alike.
pub trait ChainHasher: Send + Sync {
    /// The chain hash of `entry` sealed as `seq` after an entry whose hash is `prev`,
    /// given `details`, the canonical details [`validate_entry`] returned for it.
    ///
    /// # Errors
    /// [`EntryError`] if the entry cannot be encoded.
    fn chain_hash(
        &self,
        prev: &ChainHash,
        seq: u64,
        entry: &AuditEntry,
        details: &str,
    ) -> Result<ChainHash, EntryError>;

    /// The MAC of a checkpoint of `head` (what [`AuditLog::seal`] stores with each
    /// batch).
    fn checkpoint_mac(&self, head: &ChainHead) -> ChainHash;

    /// The key's public id (it reveals nothing of the key), as an
    /// [`KEY_ROTATED_ACTION`] entry names it.
    fn key_id(&self) -> String;

    /// Whether `mark`'s MAC is this key's over its head (constant time).
    fn is_authentic(&self, mark: &ChainMark) -> bool {
        self.checkpoint_mac(&mark.head).ct_eq(&mark.mac)
    }
}

/// Seals `entries` after `head` (`None`: the genesis): the sequence numbers and hashes
/// a chainer assigns. The adapters' `seal` uses this, so every backend numbers alike.
///
/// # Errors
/// As [`validate_entry`], for the first entry that cannot be encoded.
pub fn seal_entries(
    hasher: &dyn ChainHasher,
    head: Option<ChainHead>,
    entries: impl IntoIterator<Item = AuditEntry>,
) -> Result<Vec<SealedEntry>, EntryError> {
    let (mut seq, mut prev) = head.map_or((0, ChainHash::GENESIS), |h| (h.seq, h.hash));
    let mut out = Vec::new();
    for entry in entries {
        seq = seq.saturating_add(1);
        let details = validate_entry(&entry)?;
        let hash = hasher.chain_hash(&prev, seq, &entry, &details)?;
        prev = hash;
        out.push(SealedEntry { seq, entry, hash });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    /// A hasher for the shape of sealing, not its cryptography: byte 0 is `seq`, byte 1
    /// the previous hash's byte 0, byte 2 the length of the canonical details.
    struct Recorder;

    impl ChainHasher for Recorder {
        fn chain_hash(
            &self,
            prev: &ChainHash,
            seq: u64,
            _entry: &AuditEntry,
            details: &str,
        ) -> Result<ChainHash, EntryError> {
            let mut b = [0u8; 32];
            b[0] = seq as u8;
            b[1] = prev.as_bytes()[0];
            b[2] = details.len() as u8;
            Ok(ChainHash::from_bytes(b))
        }

        fn checkpoint_mac(&self, head: &ChainHead) -> ChainHash {
            let mut b = [9u8; 32];
            b[0] = head.seq as u8;
            b[1] = head.hash.as_bytes()[0];
            ChainHash::from_bytes(b)
        }

        fn key_id(&self) -> String {
            "recorder".into()
        }
    }

    #[test]
    fn a_sealer_refuses_to_number_behind_an_authentic_checkpoint() {
        let head = |seq: u64| ChainHead {
            seq,
            hash: ChainHash::from_bytes([seq as u8; 32]),
        };
        let mark = ChainMark::of(&Recorder, head(5));
        let forged = ChainMark {
            head: head(9),
            mac: ChainHash::from_bytes([1; 32]),
        };
        assert!(Recorder.is_authentic(&mark) && !Recorder.is_authentic(&forged));
        for at in [Some(head(5)), Some(head(6))] {
            assert!(SealPlan::new(&Recorder, at, [&mark, &forged]).is_ok());
        }
        for (at, seq) in [(Some(head(4)), 4), (None, 0)] {
            assert!(matches!(
                SealPlan::new(&Recorder, at, [&mark]),
                Err(AuditError::BehindCheckpoint { head, checkpoint: 5 }) if head == seq
            ));
        }
        assert!(SealPlan::new(&Recorder, None, [&forged]).is_ok());
    }

    /// A key of a ring: like [`Recorder`], with byte 3 of every hash and MAC its id.
    struct Keyed(u8);

    impl ChainHasher for Keyed {
        fn chain_hash(
            &self,
            prev: &ChainHash,
            seq: u64,
            entry: &AuditEntry,
            details: &str,
        ) -> Result<ChainHash, EntryError> {
            let mut b = *Recorder.chain_hash(prev, seq, entry, details)?.as_bytes();
            b[3] = self.0;
            Ok(ChainHash::from_bytes(b))
        }

        fn checkpoint_mac(&self, head: &ChainHead) -> ChainHash {
            let mut b = *Recorder.checkpoint_mac(head).as_bytes();
            b[3] = self.0;
            ChainHash::from_bytes(b)
        }

        fn key_id(&self) -> String {
            format!("key-{}", self.0)
        }
    }

    /// Key 2, with key 1 as its older key.
    struct Ring(Keyed, Keyed);

    impl ChainKeyRing for Ring {
        fn current(&self) -> &dyn ChainHasher {
            &self.0
        }
        fn previous(&self, i: usize) -> Option<&dyn ChainHasher> {
            (i == 0).then_some(&self.1 as &dyn ChainHasher)
        }
    }

    #[test]
    fn a_seal_rotates_from_the_key_in_force_at_the_head() {
        let ring = Ring(Keyed(2), Keyed(1));
        let old = Keyed(1);
        let e = |n: i64| AuditEntry {
            at: OffsetDateTime::from_unix_timestamp(1_767_225_600 + n).unwrap(),
            actor: "admin".into(),
            action: "x".into(),
            target: "p".into(),
            outcome: AuditOutcome::Success,
            reason: "r".into(),
            trace_id: "t".into(),
            details: serde_json::json!({}),
        };
        // An empty chain starts with the current key, without a rotation.
        let plan = SealPlan::new(&ring, None, []).unwrap();
        assert!(!plan.rotates());
        // A head whose checkpoint the old key made: the batch starts with the rotation
        // entry sealed with the old key, naming both; the rest is the new key's.
        let sealed = seal_entries(&old, None, [e(1)]).unwrap();
        let head = ChainHead {
            seq: 1,
            hash: sealed[0].hash,
        };
        let mark = ChainMark::of(&old, head);
        let plan = SealPlan::new(&ring, Some(head), [&mark]).unwrap();
        assert!(plan.rotates());
        let batch = plan.seal(Some(head), vec![e(2), e(3)]).unwrap();
        let seqs: Vec<(u64, &str, u8)> = batch
            .iter()
            .map(|s| (s.seq, s.entry.action.as_str(), s.hash.as_bytes()[3]))
            .collect();
        assert_eq!(seqs, [(2, KEY_ROTATED_ACTION, 1), (3, "x", 2), (4, "x", 2)]);
        assert_eq!(
            batch[0].entry.details,
            serde_json::json!({"previous_key": "key-1", "key": "key-2"})
        );
        assert_eq!(batch[0].entry.at, e(2).at);
        assert_eq!(batch[1].hash.as_bytes()[1], batch[0].hash.as_bytes()[0]);
        let end = ChainHead {
            seq: 4,
            hash: batch[2].hash,
        };
        assert!(Keyed(2).is_authentic(&plan.checkpoint(end)));
        // Nothing to seal: no rotation either.
        assert!(plan.seal(Some(head), Vec::new()).unwrap().is_empty());
        // After it, the head's checkpoint is the new key's: no rotation.
        let mark = plan.checkpoint(end);
        assert!(!SealPlan::new(&ring, Some(end), [&mark]).unwrap().rotates());
        // A sealer that holds only the old key refuses to seal after the new key's head,
        // and so does one with neither key.
        for stale in [&Keyed(1) as &dyn ChainKeyRing, &Keyed(7)] {
            assert!(matches!(
                SealPlan::new(stale, Some(end), [&mark]),
                Err(AuditError::UnknownKey { seq: 4 })
            ));
        }
        // No checkpoint at the head: the current key if it is the only one, else refused.
        assert!(!SealPlan::new(&Keyed(1), Some(end), []).unwrap().rotates());
        assert!(matches!(
            SealPlan::new(&ring, Some(end), []),
            Err(AuditError::UnknownKey { seq: 4 })
        ));
        // A checkpoint at another position (a lagging copy) does not count.
        let lagging = ChainMark::of(&Keyed(2), head);
        assert!(matches!(
            SealPlan::new(&ring, Some(end), [&lagging]),
            Err(AuditError::UnknownKey { seq: 4 })
        ));
    }

    #[test]
    fn sealing_numbers_from_the_head_and_chains_each_on_the_last() {
        let e = |n: i64| AuditEntry {
            at: OffsetDateTime::from_unix_timestamp(1_767_225_600 + n).unwrap(),
            actor: "admin".into(),
            action: "x".into(),
            target: "p".into(),
            outcome: AuditOutcome::Denied,
            reason: "r".into(),
            trace_id: "t".into(),
            details: serde_json::json!({"n": n}),
        };
        let head = ChainHead {
            seq: 41,
            hash: ChainHash::from_bytes([9; 32]),
        };
        let sealed = seal_entries(&Recorder, Some(head), [e(1), e(2), e(3)]).unwrap();
        let seqs: Vec<u64> = sealed.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [42, 43, 44]);
        assert_eq!(sealed[0].hash.as_bytes()[..3], [42, 9, 7]);
        assert_eq!(sealed[1].hash.as_bytes()[..3], [43, 42, 7]);
        assert_eq!(sealed[2].hash.as_bytes()[..3], [44, 43, 7]);
        assert_eq!(seal_entries(&Recorder, None, [e(1)]).unwrap()[0].seq, 1);
        // An entry that cannot be encoded stops the batch.
        let mut bad = e(4);
        bad.details = serde_json::json!(0.5);
        assert_eq!(
            seal_entries(&Recorder, None, [e(1), bad]).unwrap_err(),
            EntryError::DetailsFloat
        );
    }

    /// A sealed entry as one JSON line (for a SIEM export): flat, hash in hex.
    #[test]
    fn sealed_entries_serialize_flat() {
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
        let sealed = seal_entries(&Recorder, None, [entry]).unwrap().remove(0);
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
