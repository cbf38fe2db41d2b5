//! An audit entry (its fields and details from the input): validation and the chain's
//! canonical bytes. Never a panic; the canonical bytes decode back to exactly the
//! fields (the encoding is injective: two entries never share a hash input); the
//! canonical details are JSON equal to the details given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vivified_domain::audit_chain::canonical_entry;
use vivified_ports::audit::validate_entry;
use vivified_ports::{AuditEntry, AuditOutcome};

/// The input split at NUL bytes into the entry's text fields, then the details (JSON).
fn entry(data: &[u8]) -> Option<AuditEntry> {
    let mut parts = data.splitn(7, |b| *b == 0);
    let mut text = || std::str::from_utf8(parts.next()?).ok().map(str::to_owned);
    let actor = text()?;
    let action = text()?;
    let target = text()?;
    let reason = text()?;
    let trace_id = text()?;
    let flags = text()?;
    let details = vivified_domain::json::from_str(&text()?).ok()?;
    let at =
        time::OffsetDateTime::from_unix_timestamp(i64::from(flags.len() as u32) * 7919).ok()?;
    Some(AuditEntry {
        at,
        actor,
        action,
        target,
        outcome: if flags.len() % 2 == 0 {
            AuditOutcome::Success
        } else {
            AuditOutcome::Denied
        },
        reason,
        trace_id,
        details,
    })
}

/// The length-prefixed fields after the fixed head (tag, version, seq, time).
fn fields(bytes: &[u8], head: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = &bytes[head..];
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty(), "no trailing bytes");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(e) = entry(data) else {
        return;
    };
    let Ok(details) = validate_entry(&e) else {
        return;
    };
    let parsed: serde_json::Value = serde_json::from_str(&details).expect("details are JSON");
    assert_eq!(parsed, e.details);
    let bytes = canonical_entry(42, &e).expect("a validated entry encodes");
    // The tag, 0, the version, seq (8 bytes), microseconds (8 bytes), then the fields.
    let tag_len = bytes.iter().position(|b| *b == 0).expect("a tag then 0");
    let got = fields(&bytes, tag_len + 2 + 8 + 8);
    let want: [&[u8]; 7] = [
        e.actor.as_bytes(),
        e.action.as_bytes(),
        e.target.as_bytes(),
        match e.outcome {
            AuditOutcome::Success => b"success".as_slice(),
            AuditOutcome::Denied => b"denied".as_slice(),
        },
        e.reason.as_bytes(),
        e.trace_id.as_bytes(),
        details.as_bytes(),
    ];
    assert_eq!(got, want);
});
