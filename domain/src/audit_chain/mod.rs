//! The tamper-evident audit chain: the canonical encoding of a sealed entry, its keyed
//! hash, checkpoints, and the verifier that walks a chain page by page.
//!
//! Pure: no I/O and no clock, so the chainer (the adapters' `seal`, through the
//! [`ChainHasher`] port [`ChainKey`] implements) and every verifier (`vivified audit
//! verify`, `GET /audit/verify`, the tests) compute the same bytes.
//!
//! # The chain
//!
//! `hash(seq) = HMAC-SHA-256(key, hash(seq - 1) || canonical(seq, entry))`, with
//! `hash(0)` = 32 zero bytes ([`ChainHash::GENESIS`]). The key ([`ChainKey`]) comes
//! from configuration (`VIVIFIED_AUDIT_KEY`), so someone with database access alone
//! cannot rebuild the chain after editing it.
//!
//! # Canonical encoding, version 1
//!
//! Deterministic bytes; integers big-endian; each text field is a `u32` byte length
//! followed by its UTF-8 bytes:
//!
//! ```text
//! "vivified.audit.entry" 0x00 0x01          tag, NUL, version (CANONICAL_VERSION)
//! seq                  u64
//! at                   i64  microseconds since the Unix epoch, UTC (truncated)
//! actor, action, target, outcome ("success" | "denied"), reason, trace_id
//!                      u32 length || UTF-8
//! details              u32 length || canonical JSON (below)
//! ```
//!
//! Canonical JSON: see `vivified_ports::audit` (the entry's canonical details).

mod checkpoint;
mod stored;
mod verify;

pub use checkpoint::{Checkpoint, InvalidCheckpoint};
pub use stored::{StoredCheck, check_stored_checkpoints, stored_checkpoint};
pub use verify::{
    ChainFailure, ChainVerifier, CheckpointError, FailureReason, KeySpan, VerifyReport,
    verify_entries, verify_log,
};
pub use vivified_ports::audit::{
    ChainHash, ChainHead, EntryError, KEY_ROTATED_ACTION, MAX_DETAILS_BYTES, MAX_DETAILS_DEPTH,
    MAX_FIELD_BYTES, seal_entries,
};

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use vivified_ports::audit::{AuditEntry, ChainHasher, outcome_str, to_micros, validate_entry};

type HmacSha256 = Hmac<Sha256>;
use sha2::Sha256;

/// The version byte of the canonical encoding. A change of encoding is a new version;
/// entries keep the version they were sealed with.
pub const CANONICAL_VERSION: u8 = 1;

const ENTRY_TAG: &[u8] = b"vivified.audit.entry";
pub(crate) const CHECKPOINT_TAG: &[u8] = b"vivified.audit.checkpoint";
const KEY_ID_TAG: &[u8] = b"vivified.audit.key-id";

/// A key shorter than [`ChainKey::MIN_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the audit key must be at least {} bytes", ChainKey::MIN_LEN)]
pub struct WeakChainKey;

/// The HMAC key of the chain. Never printed: `Debug` shows `ChainKey([redacted])`.
/// Cheap to clone (it holds the keyed HMAC state, not a copy of the key to derive
/// from on each use).
#[derive(Clone)]
pub struct ChainKey {
    mac: HmacSha256,
}

impl ChainKey {
    /// The shortest key accepted, in bytes (as for `JWT_SECRET`).
    pub const MIN_LEN: usize = 32;

    /// A key from its bytes (for a key from configuration, the bytes of the string).
    ///
    /// # Errors
    /// [`WeakChainKey`] if `key` is shorter than [`ChainKey::MIN_LEN`].
    pub fn new(key: &[u8]) -> Result<Self, WeakChainKey> {
        if key.len() < Self::MIN_LEN {
            return Err(WeakChainKey);
        }
        // HMAC takes keys of any length; the error cannot happen.
        let mac = HmacSha256::new_from_slice(key).map_err(|_| WeakChainKey)?;
        Ok(Self { mac })
    }

    /// A short public identifier of the key (16 hex digits of an HMAC of a fixed
    /// label), so an operator can tell which key sealed a chain without revealing it.
    pub fn fingerprint(&self) -> String {
        let full = ChainHash::from_bytes(self.mac_of(&[KEY_ID_TAG]));
        full.to_hex()[..16].to_owned()
    }

    pub(crate) fn keyed(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        m
    }

    fn mac_of(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.keyed(parts).finalize().into_bytes().into()
    }

    /// The chain hash of an entry whose canonical bytes are `canonical`, after `prev`.
    pub(crate) fn hash_of(&self, prev: &ChainHash, canonical: &[u8]) -> ChainHash {
        ChainHash::from_bytes(self.mac_of(&[prev.as_bytes(), canonical]))
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey([redacted])")
    }
}

/// The canonical bytes of `entry` sealed as `seq` (version [`CANONICAL_VERSION`]).
///
/// # Errors
/// As [`validate_entry`].
pub fn canonical_entry(seq: u64, entry: &AuditEntry) -> Result<Vec<u8>, EntryError> {
    let details = validate_entry(entry)?;
    canonical_entry_validated(seq, entry, &details)
}

/// [`canonical_entry`] of an entry [`validate_entry`] accepted, with the canonical
/// details it returned: the entry is not checked, nor its details encoded, again.
///
/// # Errors
/// [`EntryError::DetailsTooLarge`] if a field is 4 GiB or longer (never, for an entry
/// [`validate_entry`] accepted).
pub fn canonical_entry_validated(
    seq: u64,
    entry: &AuditEntry,
    details: &str,
) -> Result<Vec<u8>, EntryError> {
    let fields: [&str; 7] = [
        &entry.actor,
        &entry.action,
        &entry.target,
        outcome_str(entry.outcome),
        &entry.reason,
        &entry.trace_id,
        details,
    ];
    let len: usize = fields.iter().map(|f| 4 + f.len()).sum();
    let mut out = Vec::with_capacity(ENTRY_TAG.len() + 2 + 16 + len);
    out.extend_from_slice(ENTRY_TAG);
    out.push(0);
    out.push(CANONICAL_VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&to_micros(entry.at).to_be_bytes());
    for f in fields {
        // Every field is bounded far below 4 GiB by the checks of `validate_entry`.
        let n = u32::try_from(f.len()).map_err(|_| EntryError::DetailsTooLarge)?;
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    Ok(out)
}

/// The chain hash of `entry` sealed as `seq` after an entry whose hash is `prev`:
/// `HMAC-SHA-256(key, prev || canonical_entry(seq, entry))`.
///
/// # Errors
/// As [`validate_entry`].
pub fn chain_hash(
    key: &ChainKey,
    prev: &ChainHash,
    seq: u64,
    entry: &AuditEntry,
) -> Result<ChainHash, EntryError> {
    Ok(key.hash_of(prev, &canonical_entry(seq, entry)?))
}

/// [`chain_hash`] of an entry [`validate_entry`] accepted, with the canonical details
/// it returned (a log that validated the entry on append and kept them).
///
/// # Errors
/// As [`canonical_entry_validated`].
pub fn chain_hash_validated(
    key: &ChainKey,
    prev: &ChainHash,
    seq: u64,
    entry: &AuditEntry,
    details: &str,
) -> Result<ChainHash, EntryError> {
    Ok(key.hash_of(prev, &canonical_entry_validated(seq, entry, details)?))
}

impl ChainHasher for ChainKey {
    fn chain_hash(
        &self,
        prev: &ChainHash,
        seq: u64,
        entry: &AuditEntry,
        details: &str,
    ) -> Result<ChainHash, EntryError> {
        chain_hash_validated(self, prev, seq, entry, details)
    }

    fn checkpoint_mac(&self, head: &ChainHead) -> ChainHash {
        Checkpoint::new(self, *head).mac
    }

    fn key_id(&self) -> String {
        self.fingerprint()
    }
}

impl AsRef<[ChainKey]> for ChainKey {
    fn as_ref(&self) -> &[ChainKey] {
        std::slice::from_ref(self)
    }
}

/// The chain keys a core holds: the current one (`VIVIFIED_AUDIT_KEY`), which seals new
/// entries, and older ones (`VIVIFIED_AUDIT_PREVIOUS_KEYS`, newest first) that sealed
/// earlier parts of the chain. A seal after a head an older key sealed rotates to the
/// current key ([`vivified_ports::audit::SealPlan`]); a verifier walks across every
/// rotation to a key it holds. As a slice, the current key comes first.
#[derive(Clone, Debug)]
pub struct AuditKeys {
    keys: Vec<ChainKey>,
}

/// Two keys of one [`AuditKeys`] are the same key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit key {0} is given twice (as the current key or among the previous ones)")]
pub struct DuplicateChainKey(pub String);

impl AuditKeys {
    /// The current key and the older ones, newest first.
    ///
    /// # Errors
    /// [`DuplicateChainKey`] when a key is given twice.
    pub fn new(current: ChainKey, previous: Vec<ChainKey>) -> Result<Self, DuplicateChainKey> {
        let mut keys = Vec::with_capacity(1 + previous.len());
        keys.push(current);
        for key in previous {
            let id = key.fingerprint();
            if keys.iter().any(|k| k.fingerprint() == id) {
                return Err(DuplicateChainKey(id));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// The key that seals.
    pub fn current(&self) -> &ChainKey {
        &self.keys[0]
    }

    /// The older keys, newest first.
    pub fn previous(&self) -> &[ChainKey] {
        &self.keys[1..]
    }

    /// The key with this fingerprint.
    pub fn by_fingerprint(&self, id: &str) -> Option<&ChainKey> {
        self.keys.iter().find(|k| k.fingerprint() == id)
    }
}

impl From<ChainKey> for AuditKeys {
    fn from(key: ChainKey) -> Self {
        Self { keys: vec![key] }
    }
}

impl AsRef<[ChainKey]> for AuditKeys {
    fn as_ref(&self) -> &[ChainKey] {
        &self.keys
    }
}

impl vivified_ports::audit::ChainKeyRing for AuditKeys {
    fn current(&self) -> &dyn ChainHasher {
        &self.keys[0]
    }

    fn previous(&self, i: usize) -> Option<&dyn ChainHasher> {
        self.keys.get(i + 1).map(|k| k as &dyn ChainHasher)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use time::OffsetDateTime;
    use vivified_ports::audit::AuditOutcome;

    /// The key the chain tests seal with.
    pub(crate) fn key() -> ChainKey {
        ChainKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    /// An entry whose details exercise the canonical JSON (order, escapes, nesting).
    pub(crate) fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_123_456_789).unwrap(),
            actor: "admin".into(),
            action: action.into(),
            target: "p1".into(),
            outcome: AuditOutcome::Success,
            reason: "ok".into(),
            trace_id: "t".into(),
            details: json!({"b": [1, -2, "x"], "a": null, "é": true, "B": {"z": 1, "y": 2}}),
        }
    }

    #[test]
    fn canonical_entry_is_stable() {
        // A fixed vector: changing the encoding must change CANONICAL_VERSION.
        let e = entry("plugin.register");
        let bytes = canonical_entry(7, &e).unwrap();
        assert!(bytes.starts_with(b"vivified.audit.entry\x00\x01"));
        assert_eq!(&bytes[22..30], &7u64.to_be_bytes());
        assert_eq!(&bytes[30..38], &1_767_225_600_123_456i64.to_be_bytes());
        let h = chain_hash(&key(), &ChainHash::GENESIS, 7, &e).unwrap();
        assert_eq!(
            h.to_hex(),
            "e5540278b6fc607042f886609d376faebb1347b1fa1abf0b539d5b8a4d4918c4"
        );
        // The same bytes and hash from the details `validate_entry` returned.
        let details = validate_entry(&e).unwrap();
        assert_eq!(canonical_entry_validated(7, &e, &details).unwrap(), bytes);
        assert_eq!(
            chain_hash_validated(&key(), &ChainHash::GENESIS, 7, &e, &details).unwrap(),
            h
        );
    }

    #[test]
    fn key_is_never_printed_and_must_be_long() {
        assert_eq!(ChainKey::new(b"short").unwrap_err(), WeakChainKey);
        let k = ChainKey::new(b"super-secret-key-material-0123456789").unwrap();
        assert_eq!(format!("{k:?}"), "ChainKey([redacted])");
        assert_eq!(k.fingerprint().len(), 16);
        assert_ne!(k.fingerprint(), key().fingerprint());
    }
}
