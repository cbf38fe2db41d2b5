//! An audit entry as the port carries it: its fields, its limits, its canonical
//! details (RFC 8785 JSON, what every store keeps and the chain hashes), the sealed
//! form with its place in the chain, and the time and outcome encodings every store
//! shares. Plain data and pure functions: the keyed hashing that chains entries is the
//! domain's (`vivified_domain::audit_chain`).
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

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

/// The largest canonical JSON encoding of an entry's `details`, in bytes.
pub const MAX_DETAILS_BYTES: usize = 4096;

/// The deepest nesting of arrays and objects in `details`.
pub const MAX_DETAILS_DEPTH: usize = 16;

/// The longest text field (actor, action, target, reason, trace id), in bytes.
pub const MAX_FIELD_BYTES: usize = 512;

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
        hex::encode(self.0)
    }

    /// Equality in time independent of where the bytes differ.
    pub fn ct_eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

/// A string that is not 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a 64-digit hex hash")]
pub struct InvalidHash;

impl FromStr for ChainHash {
    type Err = InvalidHash;

    fn from_str(s: &str) -> Result<Self, InvalidHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| InvalidHash)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
