//! The tamper-evident audit chain: the canonical encoding of a sealed entry, its keyed
//! hash, checkpoints, and the verifier that walks a chain page by page.
//!
//! Pure: no I/O and no clock, so the chainer (the adapters' `seal`) and every verifier
//! (`vivified audit verify`, `GET /audit/verify`, the tests) compute the same bytes.
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
//! Canonical JSON is RFC 8785 (JCS) restricted to what the audit log accepts: no
//! insignificant whitespace, object members sorted by the UTF-16 code units of their
//! names, strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
//! control characters as `\u00xx`, everything else literal), integers in plain decimal.
//! Non-integer numbers are refused ([`EntryError::DetailsFloat`]): they do not survive
//! every JSON parser and database round trip bit for bit, and a chain must re-hash to
//! the same bytes after years in storage. Write such values as strings.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditOutcome, SealedEntry};

type HmacSha256 = Hmac<Sha256>;

/// The version byte of the canonical encoding. A change of encoding is a new version;
/// entries keep the version they were sealed with.
pub const CANONICAL_VERSION: u8 = 1;

/// The largest canonical JSON encoding of an entry's `details`, in bytes.
pub const MAX_DETAILS_BYTES: usize = 4096;

/// The deepest nesting of arrays and objects in `details`.
pub const MAX_DETAILS_DEPTH: usize = 16;

/// The longest text field (actor, action, target, reason, trace id), in bytes.
pub const MAX_FIELD_BYTES: usize = 512;

const ENTRY_TAG: &[u8] = b"vivified.audit.entry";
const CHECKPOINT_TAG: &[u8] = b"vivified.audit.checkpoint";
const KEY_ID_TAG: &[u8] = b"vivified.audit.key-id";

/// Why an entry cannot be encoded (and so cannot be appended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// `details` encode to more than [`MAX_DETAILS_BYTES`].
    #[error("audit details exceed {MAX_DETAILS_BYTES} bytes")]
    DetailsTooLarge,
    /// `details` nest deeper than [`MAX_DETAILS_DEPTH`].
    #[error("audit details nest deeper than {MAX_DETAILS_DEPTH} levels")]
    DetailsTooDeep,
    /// `details` hold a number that is not an integer.
    #[error("audit details hold a non-integer number")]
    DetailsFloat,
    /// A text field is longer than [`MAX_FIELD_BYTES`].
    #[error("audit field {0} exceeds {MAX_FIELD_BYTES} bytes")]
    FieldTooLong(&'static str),
    /// A text field holds a control character (NUL, newline, …).
    #[error("audit field {0} holds a control character")]
    ControlCharacter(&'static str),
}

// ---------------------------------------------------------------------------
// Hashes and keys
// ---------------------------------------------------------------------------

/// A 32-byte chain hash (or checkpoint MAC). Printed and serialized as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash([u8; 32]);

impl ChainHash {
    /// The hash "before" seq 1: 32 zero bytes.
    pub const GENESIS: Self = Self([0; 32]);

    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From a slice, if it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Equality in time independent of where the bytes differ.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// A string that is not 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a 64-digit hex hash")]
pub struct InvalidHash;

impl FromStr for ChainHash {
    type Err = InvalidHash;

    fn from_str(s: &str) -> Result<Self, InvalidHash> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        }
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(InvalidHash);
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *o = (nibble(pair[0]).ok_or(InvalidHash)? << 4) | nibble(pair[1]).ok_or(InvalidHash)?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The position of a chain: the last sealed sequence number and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number (the first entry is 1).
    pub seq: u64,
    /// The entry's chain hash.
    pub hash: ChainHash,
}

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
        let full = ChainHash(self.mac_of(&[KEY_ID_TAG]));
        full.to_hex()[..16].to_owned()
    }

    fn keyed(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        m
    }

    fn mac_of(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.keyed(parts).finalize().into_bytes().into()
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey([redacted])")
    }
}

// ---------------------------------------------------------------------------
// Canonical encoding
// ---------------------------------------------------------------------------

/// Microseconds since the Unix epoch (UTC), truncated toward negative infinity: the
/// precision of the chain and of every store.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    // `time` covers years ±9999, well inside i64 microseconds.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

/// The instant `us` microseconds after the Unix epoch, if representable.
pub fn from_micros(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

/// `t` truncated to whole microseconds, as a store keeps it.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    from_micros(to_micros(t)).unwrap_or(t)
}

/// `"success"` or `"denied"`.
pub fn outcome_str(outcome: AuditOutcome) -> &'static str {
    match outcome {
        AuditOutcome::Success => "success",
        AuditOutcome::Denied => "denied",
    }
}

/// The outcome named by [`outcome_str`].
pub fn parse_outcome(s: &str) -> Option<AuditOutcome> {
    match s {
        "success" => Some(AuditOutcome::Success),
        "denied" => Some(AuditOutcome::Denied),
        _ => None,
    }
}

/// The canonical JSON of `details` (see the module docs).
///
/// # Errors
/// [`EntryError::DetailsTooLarge`], [`EntryError::DetailsTooDeep`] or
/// [`EntryError::DetailsFloat`].
pub fn canonical_details(details: &Value) -> Result<String, EntryError> {
    let mut out = String::new();
    write_json(&mut out, details, 0)?;
    Ok(out)
}

fn write_json(out: &mut String, v: &Value, depth: usize) -> Result<(), EntryError> {
    if depth > MAX_DETAILS_DEPTH {
        return Err(EntryError::DetailsTooDeep);
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                return Err(EntryError::DetailsFloat);
            }
        }
        Value::String(s) => push_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, k);
                out.push(':');
                write_json(out, item, depth + 1)?;
            }
            out.push('}');
        }
    }
    if out.len() > MAX_DETAILS_BYTES {
        return Err(EntryError::DetailsTooLarge);
    }
    Ok(())
}

/// Appends `s` as a JSON string, quotes included, escaped minimally as the canonical
/// form requires (`\"`, `\\`, `\b \f \n \r \t`, other control characters as
/// lowercase `\u00xx`, everything else literal): exactly what `serde_json` writes, which
/// writes it (`escapes_are_the_canonical_ones` pins every byte).
fn push_string(out: &mut String, s: &str) {
    // Serialising a `str` cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

fn check_field(name: &'static str, value: &str) -> Result<(), EntryError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(EntryError::FieldTooLong(name));
    }
    if value.chars().any(char::is_control) {
        return Err(EntryError::ControlCharacter(name));
    }
    Ok(())
}

/// Checks the limits of an entry: every text field at most [`MAX_FIELD_BYTES`] and
/// free of control characters; `details` encodable within [`MAX_DETAILS_BYTES`].
/// Returns the canonical JSON of `details`.
///
/// # Errors
/// The first limit broken.
pub fn validate_entry(entry: &AuditEntry) -> Result<String, EntryError> {
    check_field("actor", &entry.actor)?;
    check_field("action", &entry.action)?;
    check_field("target", &entry.target)?;
    check_field("reason", &entry.reason)?;
    check_field("trace_id", &entry.trace_id)?;
    canonical_details(&entry.details)
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
    let bytes = canonical_entry(seq, entry)?;
    Ok(ChainHash(key.mac_of(&[prev.as_bytes(), &bytes])))
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
    let bytes = canonical_entry_validated(seq, entry, details)?;
    Ok(ChainHash(key.mac_of(&[prev.as_bytes(), &bytes])))
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

/// A signed statement "the chain had `hash` at `seq`", kept outside the database
/// (structured log, a bus subject). A bare chain cannot show that rows were cut from
/// its end; verifying against a checkpoint can.
///
/// `mac = HMAC-SHA-256(key, "vivified.audit.checkpoint" 0x00 0x01 || seq (u64 BE) ||
/// hash)`. Written as text `SEQ:HASH:MAC` (hex), e.g. in a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number it covers.
    pub seq: u64,
    /// The chain hash at `seq`.
    pub hash: ChainHash,
    /// The MAC over `seq` and `hash`.
    pub mac: ChainHash,
}

impl Checkpoint {
    /// Signs `head`.
    pub fn new(key: &ChainKey, head: ChainHead) -> Self {
        let mac = Self::keyed(key, head.seq, &head.hash)
            .finalize()
            .into_bytes()
            .into();
        Self {
            seq: head.seq,
            hash: head.hash,
            mac: ChainHash(mac),
        }
    }

    /// Whether `mac` was made with `key` over this `seq` and `hash` (constant time).
    pub fn is_authentic(&self, key: &ChainKey) -> bool {
        Self::keyed(key, self.seq, &self.hash)
            .verify_slice(self.mac.as_bytes())
            .is_ok()
    }

    /// The position it vouches for.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }

    fn keyed(key: &ChainKey, seq: u64, hash: &ChainHash) -> HmacSha256 {
        key.keyed(&[
            CHECKPOINT_TAG,
            &[0, CANONICAL_VERSION],
            &seq.to_be_bytes(),
            hash.as_bytes(),
        ])
    }
}

/// Text that is not `SEQ:HASH:MAC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint (expected SEQ:HASH:MAC in hex)")]
pub struct InvalidCheckpoint;

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.seq, self.hash, self.mac)
    }
}

impl FromStr for Checkpoint {
    type Err = InvalidCheckpoint;

    fn from_str(s: &str) -> Result<Self, InvalidCheckpoint> {
        let mut parts = s.trim().split(':');
        let (Some(seq), Some(hash), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidCheckpoint);
        };
        Ok(Self {
            seq: seq.parse().map_err(|_| InvalidCheckpoint)?,
            hash: hash.parse().map_err(|_| InvalidCheckpoint)?,
            mac: mac.parse().map_err(|_| InvalidCheckpoint)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Why a chain is not intact, as a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The entry's stored hash is not the hash of its content chained on its
    /// predecessor: the entry (or its hash) was modified, swapped, forged or inserted,
    /// the sequence numbers after a deletion were renumbered — or the key is wrong.
    HashMismatch,
    /// The sequence number expected next is missing: an entry was deleted.
    SequenceGap,
    /// A sequence number repeats or goes backwards in what was fed to the verifier.
    SequenceOutOfOrder,
    /// The store holds an entry at this sequence number that cannot be decoded or
    /// encoded (a field altered to a value the log never writes).
    MalformedEntry,
    /// The chain's hash at the checkpoint's sequence number differs from the
    /// checkpoint's: the chain was cut back and regrown, or replaced.
    CheckpointMismatch,
    /// The chain ends before the checkpoint's sequence number: entries were cut from
    /// its end.
    ChainTruncated,
}

impl FailureReason {
    /// The code: `hash_mismatch`, `sequence_gap`, `sequence_out_of_order`,
    /// `malformed_entry`, `checkpoint_mismatch`, `chain_truncated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HashMismatch => "hash_mismatch",
            Self::SequenceGap => "sequence_gap",
            Self::SequenceOutOfOrder => "sequence_out_of_order",
            Self::MalformedEntry => "malformed_entry",
            Self::CheckpointMismatch => "checkpoint_mismatch",
            Self::ChainTruncated => "chain_truncated",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first place a chain is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainFailure {
    /// The first bad sequence number: the entry that does not verify, the missing
    /// one (gap, truncation), or the one out of order.
    pub seq: u64,
    /// Why.
    pub reason: FailureReason,
}

/// The outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The highest sequence number up to which the chain is intact (0: none).
    pub verified_up_to: u64,
    /// The last verified position (its hash), from which a later verification can
    /// resume ([`ChainVerifier::resume`]); `None` if nothing was verified.
    pub head: Option<ChainHead>,
    /// The first break, if any.
    pub failure: Option<ChainFailure>,
}

impl VerifyReport {
    /// Whether everything fed verified (and the checkpoint, if one was given, holds).
    pub fn intact(&self) -> bool {
        self.failure.is_none()
    }

    /// The first bad sequence number, if any.
    pub fn first_bad_seq(&self) -> Option<u64> {
        self.failure.map(|f| f.seq)
    }

    /// The failure's reason code, if any.
    pub fn reason(&self) -> Option<&'static str> {
        self.failure.map(|f| f.reason.as_str())
    }
}

/// Why a checkpoint cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Its MAC was not made with this key over its `seq` and `hash`.
    #[error("the checkpoint's MAC does not verify with this key")]
    NotAuthentic,
    /// It covers a position before where this verification starts.
    #[error("the checkpoint lies before the position verification resumes from")]
    BeforeStart,
}

/// Walks a chain in ascending sequence order, fed one page at a time (so a long chain
/// never has to be in memory, and a server can yield between pages), and reports
/// "intact up to N" or the first bad sequence number with a reason.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    key: ChainKey,
    next_seq: u64,
    prev: ChainHash,
    last: Option<ChainHead>,
    failure: Option<ChainFailure>,
    checkpoint: Option<Checkpoint>,
}

impl ChainVerifier {
    /// Verifies from the genesis (seq 1).
    pub fn new(key: &ChainKey) -> Self {
        Self {
            key: key.clone(),
            next_seq: 1,
            prev: ChainHash::GENESIS,
            last: None,
            failure: None,
            checkpoint: None,
        }
    }

    /// Verifies from `after.seq + 1`, trusting `after` (the head of an earlier
    /// verification, or an authentic checkpoint's position).
    pub fn resume(key: &ChainKey, after: ChainHead) -> Self {
        Self {
            key: key.clone(),
            next_seq: after.seq.saturating_add(1),
            prev: after.hash,
            last: (after.seq > 0).then_some(after),
            failure: None,
            checkpoint: None,
        }
    }

    /// Also checks the chain against `checkpoint`: the entry at its `seq` MUST have
    /// its `hash`, and the chain MUST reach its `seq`.
    ///
    /// # Errors
    /// [`CheckpointError::NotAuthentic`] if its MAC does not verify with this key;
    /// [`CheckpointError::BeforeStart`] if it lies before the resume position.
    pub fn with_checkpoint(mut self, checkpoint: Checkpoint) -> Result<Self, CheckpointError> {
        if !checkpoint.is_authentic(&self.key) {
            return Err(CheckpointError::NotAuthentic);
        }
        if checkpoint.seq < self.next_seq {
            let at_start = self
                .last
                .is_some_and(|l| l.seq == checkpoint.seq && l.hash.ct_eq(&checkpoint.hash));
            if !at_start {
                return Err(CheckpointError::BeforeStart);
            }
        }
        self.checkpoint = Some(checkpoint);
        Ok(self)
    }

    /// The sequence number to fetch next (`AuditLog::range(next_seq, …)`).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether a break was found (feeding more changes nothing).
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Verifies the next entries, which MUST follow what was fed before in ascending
    /// sequence order. Returns `false` once a break is found.
    pub fn feed(&mut self, entries: &[SealedEntry]) -> bool {
        for e in entries {
            if self.failure.is_some() {
                break;
            }
            self.feed_one(e);
        }
        self.failure.is_none()
    }

    fn fail(&mut self, seq: u64, reason: FailureReason) {
        if self.failure.is_none() {
            self.failure = Some(ChainFailure { seq, reason });
        }
    }

    fn feed_one(&mut self, e: &SealedEntry) {
        if e.seq < self.next_seq {
            return self.fail(e.seq, FailureReason::SequenceOutOfOrder);
        }
        if e.seq > self.next_seq {
            return self.fail(self.next_seq, FailureReason::SequenceGap);
        }
        let hash = match chain_hash(&self.key, &self.prev, e.seq, &e.entry) {
            Ok(h) => h,
            Err(_) => return self.fail(e.seq, FailureReason::MalformedEntry),
        };
        if !hash.ct_eq(&e.hash) {
            return self.fail(e.seq, FailureReason::HashMismatch);
        }
        if let Some(cp) = self.checkpoint
            && cp.seq == e.seq
            && !cp.hash.ct_eq(&hash)
        {
            return self.fail(e.seq, FailureReason::CheckpointMismatch);
        }
        self.prev = hash;
        self.last = Some(ChainHead { seq: e.seq, hash });
        self.next_seq = e.seq.saturating_add(1);
    }

    /// Records that the store could not decode the entry at `seq` (which the caller
    /// fetched at [`ChainVerifier::next_seq`] or later). Ignored after a break.
    pub fn malformed(&mut self, seq: u64) {
        if seq > self.next_seq {
            self.fail(self.next_seq, FailureReason::SequenceGap);
        } else if seq < self.next_seq {
            self.fail(seq, FailureReason::SequenceOutOfOrder);
        } else {
            self.fail(seq, FailureReason::MalformedEntry);
        }
    }

    /// The report once everything was fed: the end of the chain was reached. With a
    /// checkpoint, a chain that ends before it is [`FailureReason::ChainTruncated`].
    pub fn finish(mut self) -> VerifyReport {
        if let Some(cp) = self.checkpoint
            && self.next_seq <= cp.seq
        {
            self.fail(self.next_seq, FailureReason::ChainTruncated);
        }
        self.report()
    }

    /// The report so far, without the end-of-chain checks (for a bounded walk that
    /// stops before the end).
    pub fn report(&self) -> VerifyReport {
        VerifyReport {
            verified_up_to: self.last.map_or(0, |l| l.seq),
            head: self.last,
            failure: self.failure,
        }
    }
}

/// Verifies a whole chain held in memory, from the genesis, against an optional
/// checkpoint.
///
/// # Errors
/// As [`ChainVerifier::with_checkpoint`].
pub fn verify_entries(
    key: &ChainKey,
    entries: &[SealedEntry],
    checkpoint: Option<Checkpoint>,
) -> Result<VerifyReport, CheckpointError> {
    let mut v = ChainVerifier::new(key);
    if let Some(cp) = checkpoint {
        v = v.with_checkpoint(cp)?;
    }
    v.feed(entries);
    Ok(v.finish())
}

/// Seals `entries` after `head` (`None`: the genesis): the sequence numbers and hashes
/// a chainer assigns. The adapters' `seal` uses this, so every backend chains alike.
///
/// # Errors
/// As [`validate_entry`], for the first entry that cannot be encoded.
pub fn seal_entries(
    key: &ChainKey,
    head: Option<ChainHead>,
    entries: impl IntoIterator<Item = AuditEntry>,
) -> Result<Vec<SealedEntry>, EntryError> {
    let (mut seq, mut prev) = head.map_or((0, ChainHash::GENESIS), |h| (h.seq, h.hash));
    let mut out = Vec::new();
    for entry in entries {
        seq = seq.saturating_add(1);
        let hash = chain_hash(key, &prev, seq, &entry)?;
        prev = hash;
        out.push(SealedEntry { seq, entry, hash });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8785's string escaping, written out from the RFC for comparison.
    fn jcs_string(s: &str) -> String {
        use std::fmt::Write as _;
        let mut o = String::from('"');
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                '\u{8}' => o.push_str("\\b"),
                '\u{c}' => o.push_str("\\f"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                c if u32::from(c) < 0x20 => write!(o, "\\u{:04x}", u32::from(c)).unwrap(),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }

    #[test]
    fn escapes_are_the_canonical_ones() {
        let all_ascii: String = (0u8..=0x7f).map(char::from).collect();
        for s in [
            "",
            "plain",
            all_ascii.as_str(),
            "é ☃ 😀 \u{2028}\u{2029}\u{7f}",
        ] {
            let mut out = String::new();
            push_string(&mut out, s);
            assert_eq!(out, jcs_string(s), "{s:?}");
            assert_eq!(
                canonical_details(&Value::String(s.to_owned())).unwrap(),
                jcs_string(s)
            );
        }
    }
    use serde_json::json;

    fn key() -> ChainKey {
        ChainKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn entry(action: &str) -> AuditEntry {
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

    fn chain(n: usize) -> Vec<SealedEntry> {
        seal_entries(&key(), None, (0..n).map(|i| entry(&format!("a{i}")))).unwrap()
    }

    #[test]
    fn canonical_json_is_sorted_and_compact() {
        let s = canonical_details(&entry("x").details).unwrap();
        assert_eq!(s, r#"{"B":{"y":2,"z":1},"a":null,"b":[1,-2,"x"],"é":true}"#);
        assert_eq!(
            canonical_details(&json!("q\"\\\n\u{1}é/")).unwrap(),
            r#""q\"\\\n\u0001é/""#
        );
        // UTF-16 order: U+FB33 (one unit) sorts after U+1F600 (a surrogate pair).
        assert_eq!(
            canonical_details(&json!({"\u{fb33}": 1, "\u{1f600}": 2})).unwrap(),
            "{\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
        assert_eq!(
            canonical_details(&json!(18_446_744_073_709_551_615u64)).unwrap(),
            "18446744073709551615"
        );
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
    fn limits_are_enforced() {
        let mut e = entry("x");
        e.details = json!({"blob": "x".repeat(MAX_DETAILS_BYTES)});
        assert_eq!(validate_entry(&e), Err(EntryError::DetailsTooLarge));
        e.details = json!(1.5);
        assert_eq!(validate_entry(&e), Err(EntryError::DetailsFloat));
        let mut deep = json!(1);
        for _ in 0..=MAX_DETAILS_DEPTH {
            deep = json!([deep]);
        }
        e.details = deep;
        assert_eq!(validate_entry(&e), Err(EntryError::DetailsTooDeep));
        e.details = Value::Null;
        e.actor = "a\0b".into();
        assert_eq!(
            validate_entry(&e),
            Err(EntryError::ControlCharacter("actor"))
        );
        e.actor = "a".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(validate_entry(&e), Err(EntryError::FieldTooLong("actor")));
    }

    #[test]
    fn key_is_never_printed_and_must_be_long() {
        assert_eq!(ChainKey::new(b"short").unwrap_err(), WeakChainKey);
        let k = ChainKey::new(b"super-secret-key-material-0123456789").unwrap();
        assert_eq!(format!("{k:?}"), "ChainKey([redacted])");
        assert_eq!(k.fingerprint().len(), 16);
        assert_ne!(k.fingerprint(), key().fingerprint());
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let r = verify_entries(&key(), &c, None).unwrap();
        assert!(r.intact());
        assert_eq!(r.verified_up_to, 5);
        assert_eq!(
            r.head.unwrap(),
            ChainHead {
                seq: 5,
                hash: c[4].hash
            }
        );
        // Page by page, and resumed.
        let mut v = ChainVerifier::new(&key());
        assert!(v.feed(&c[..2]));
        assert_eq!(v.next_seq(), 3);
        let head = v.report().head.unwrap();
        let mut w = ChainVerifier::resume(&key(), head);
        assert!(w.feed(&c[2..]));
        assert_eq!(w.finish().verified_up_to, 5);
        // An empty chain is intact up to 0.
        let r = verify_entries(&key(), &[], None).unwrap();
        assert!(r.intact() && r.verified_up_to == 0 && r.head.is_none());
    }

    #[test]
    fn every_tampering_is_located() {
        let fail = |c: &[SealedEntry]| verify_entries(&key(), c, None).unwrap().failure;
        let f = |seq, reason| Some(ChainFailure { seq, reason });

        let mut c = chain(6);
        c[2].entry.actor = "mallory".into();
        assert_eq!(fail(&c), f(3, FailureReason::HashMismatch), "modified");

        let mut c = chain(6);
        c.remove(3);
        assert_eq!(fail(&c), f(4, FailureReason::SequenceGap), "deleted");

        let mut c = chain(6);
        c.remove(3);
        for e in &mut c[3..] {
            e.seq -= 1;
        }
        assert_eq!(fail(&c), f(4, FailureReason::HashMismatch), "renumbered");

        let mut c = chain(6);
        let (a, b) = (c[1].clone(), c[4].clone());
        c[1] = SealedEntry { seq: 2, ..b };
        c[4] = SealedEntry { seq: 5, ..a };
        assert_eq!(fail(&c), f(2, FailureReason::HashMismatch), "swapped");

        let mut c = chain(6);
        c.swap(1, 2);
        assert_eq!(fail(&c), f(2, FailureReason::SequenceGap), "reordered");

        let mut c = chain(6);
        let dup = c[2].clone();
        c.insert(3, dup);
        assert_eq!(
            fail(&c),
            f(3, FailureReason::SequenceOutOfOrder),
            "duplicated"
        );

        let mut c = chain(6);
        c.push(SealedEntry {
            seq: 7,
            entry: entry("forged"),
            hash: ChainHash::from_bytes([7; 32]),
        });
        assert_eq!(fail(&c), f(7, FailureReason::HashMismatch), "appended");

        let wrong = ChainKey::new(&[9u8; 32]).unwrap();
        let r = verify_entries(&wrong, &chain(3), None).unwrap();
        assert_eq!(r.failure, f(1, FailureReason::HashMismatch), "wrong key");
        assert_eq!(r.verified_up_to, 0);

        let mut v = ChainVerifier::new(&key());
        v.feed(&chain(2));
        v.malformed(3);
        assert_eq!(v.finish().failure, f(3, FailureReason::MalformedEntry));
    }

    #[test]
    fn checkpoints_catch_a_cut_end() {
        let c = chain(6);
        let cp = Checkpoint::new(
            &key(),
            ChainHead {
                seq: 6,
                hash: c[5].hash,
            },
        );
        assert!(cp.is_authentic(&key()));
        assert_eq!(cp.to_string().parse::<Checkpoint>().unwrap(), cp);
        let json = serde_json::to_string(&cp).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), cp);

        let r = verify_entries(&key(), &c, Some(cp)).unwrap();
        assert!(r.intact());
        // Without the checkpoint a cut end is invisible; with it, it is located.
        assert!(verify_entries(&key(), &c[..4], None).unwrap().intact());
        let r = verify_entries(&key(), &c[..4], Some(cp)).unwrap();
        assert_eq!(
            r.failure,
            Some(ChainFailure {
                seq: 5,
                reason: FailureReason::ChainTruncated
            })
        );
        assert_eq!(r.verified_up_to, 4);
        // Cut and regrown: the same length, another hash at the checkpoint.
        let mut regrown = c[..4].to_vec();
        regrown.extend(
            seal_entries(
                &key(),
                Some(ChainHead {
                    seq: 4,
                    hash: c[3].hash,
                }),
                [entry("new-5"), entry("new-6")],
            )
            .unwrap(),
        );
        let r = verify_entries(&key(), &regrown, Some(cp)).unwrap();
        assert_eq!(
            r.failure,
            Some(ChainFailure {
                seq: 6,
                reason: FailureReason::CheckpointMismatch
            })
        );
        // Forged or foreign checkpoints are refused.
        let mut forged = cp;
        forged.seq = 3;
        assert_eq!(
            verify_entries(&key(), &c, Some(forged)).unwrap_err(),
            CheckpointError::NotAuthentic
        );
        let other = ChainKey::new(&[1u8; 40]).unwrap();
        assert!(!cp.is_authentic(&other));
        assert!("1:xyz:abc".parse::<Checkpoint>().is_err());
        assert!("".parse::<Checkpoint>().is_err());
    }
}
