//! `vivified audit verify --export FILE`: verifies an export of the audit chain
//! (`GET /audit/export`, one sealed entry per line) offline, with the core's audit keys
//! from the environment — no core needed, so an auditor can check the copy a SIEM
//! keeps. Walks across key rotations like `GET /audit/verify`.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};
use vivified_domain::audit_chain::{
    AuditKeys, ChainHead, ChainKey, ChainVerifier, Checkpoint, CheckpointError, VerifyReport,
};
use vivified_ports::SealedEntry;

use crate::Error;
use crate::text::safe;

/// Entries fed to the verifier at once.
const BATCH: usize = 1000;

/// The audit keys from `VIVIFIED_AUDIT_KEY` and `VIVIFIED_AUDIT_PREVIOUS_KEYS`
/// (environment only: a key on the command line would show in `ps`).
fn keys_from_env() -> Result<AuditKeys, Error> {
    let current = std::env::var("VIVIFIED_AUDIT_KEY").map_err(|_| {
        Error::Export(
            "VIVIFIED_AUDIT_KEY is not set: an export is verified with the core's audit key".into(),
        )
    })?;
    let key = |k: &str, name: &str| {
        ChainKey::new(k.as_bytes())
            .map_err(|_| Error::Export(format!("{name}: every key must be at least 32 bytes")))
    };
    let previous = std::env::var("VIVIFIED_AUDIT_PREVIOUS_KEYS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| key(k, "VIVIFIED_AUDIT_PREVIOUS_KEYS"))
        .collect::<Result<Vec<_>, _>>()?;
    AuditKeys::new(key(current.trim(), "VIVIFIED_AUDIT_KEY")?, previous)
        .map_err(|e| Error::Export(e.to_string()))
}

/// Verifies the export at `path` (`-`: standard input): exit 0 and "intact up to seq
/// N", exit 1 and "first bad seq N: reason", exit 2 when it cannot tell.
pub fn verify(path: &Path, checkpoint: Option<Checkpoint>, json: bool) -> Result<ExitCode, Error> {
    let keys = keys_from_env()?;
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Export(format!("cannot read {}: {e}", path.display())))?;
        Box::new(std::io::BufReader::new(file))
    };
    let (report, start) = walk(reader, &keys, checkpoint)?;
    let answer = render(&report, start, json);
    crate::text::write_out(&answer)?;
    Ok(if report.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Walks the lines of an export. Returns the report and the sequence number the export
/// starts at. An export that starts after the genesis (`GET /audit/export?after=N`)
/// cannot show that its first entry follows the one before: that entry is taken as
/// the start, and verification begins with the next.
fn walk(
    reader: impl BufRead,
    keys: &AuditKeys,
    checkpoint: Option<Checkpoint>,
) -> Result<(VerifyReport, u64), Error> {
    let mut verifier: Option<ChainVerifier> = None;
    let mut start = 0;
    let mut batch: Vec<SealedEntry> = Vec::with_capacity(BATCH);
    for line in reader.lines() {
        let line = line.map_err(|e| Error::Export(format!("cannot read the export: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<SealedEntry>(&line);
        let Some(v) = verifier.as_mut() else {
            let Ok(first) = parsed else {
                return Err(Error::Export(
                    "the export's first line is not an audit entry".into(),
                ));
            };
            start = first.seq;
            let mut v = if first.seq <= 1 {
                ChainVerifier::new(keys)
            } else {
                let after = ChainHead {
                    seq: first.seq,
                    hash: first.hash,
                };
                ChainVerifier::resume(keys, after, None)
            };
            if let Some(cp) = checkpoint {
                v = v.with_checkpoint(cp).map_err(|e| {
                    Error::Export(match e {
                        CheckpointError::NotAuthentic => {
                            "--checkpoint was not made with these audit keys".into()
                        }
                        CheckpointError::BeforeStart => {
                            "--checkpoint lies before the export's first entry".into()
                        }
                    })
                })?;
            }
            if first.seq <= 1 {
                batch.push(first);
            }
            verifier = Some(v);
            continue;
        };
        match parsed {
            Ok(e) => batch.push(e),
            Err(_) => {
                // What precedes it first, then the line that is not an entry.
                v.feed(&std::mem::take(&mut batch));
                let at = v.next_seq();
                v.malformed(at);
                return Ok((v.report(), start));
            }
        }
        if batch.len() >= BATCH && !v.feed(&std::mem::take(&mut batch)) {
            return Ok((v.report(), start));
        }
    }
    let Some(mut v) = verifier else {
        return Err(Error::Export("the export holds no entry".into()));
    };
    v.feed(&batch);
    Ok((v.finish(), start))
}

fn render(report: &VerifyReport, start: u64, json: bool) -> String {
    if json {
        let mut out = json!({
            "intact": report.intact(),
            "verified_up_to": report.verified_up_to,
            "first_bad_seq": report.first_bad_seq(),
            "reason": report.reason(),
            "from_seq": start,
            "keys": report.keys,
        });
        if start > 1 {
            out["note"] = Value::from(
                "the export starts after the genesis: its first entry is taken as the start",
            );
        }
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&out).unwrap_or_default()
        );
    }
    let keys: Vec<String> = report
        .keys
        .iter()
        .map(|s| format!("key {} from seq {}", safe(&s.key), s.from_seq))
        .collect();
    let mut text = match report.failure {
        Some(f) => format!("first bad seq {}: {}", f.seq, f.reason),
        None if keys.len() > 1 => format!(
            "intact up to seq {} ({})",
            report.verified_up_to,
            keys.join(", ")
        ),
        None => format!("intact up to seq {}", report.verified_up_to),
    };
    if start > 1 {
        text.push_str(&format!(
            " (the export starts at seq {start}, taken as the start)"
        ));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::OffsetDateTime;
    use vivified_domain::audit_chain::seal_entries;
    use vivified_ports::audit::{AuditEntry, AuditOutcome, ChainMark, SealPlan};

    fn entry(n: i64) -> AuditEntry {
        AuditEntry {
            at: OffsetDateTime::from_unix_timestamp(1_767_225_600 + n).unwrap(),
            actor: "admin".into(),
            action: "plugin.disable".into(),
            target: format!("p{n}"),
            outcome: AuditOutcome::Success,
            reason: "operator".into(),
            trace_id: "t".into(),
            details: json!({"n": n}),
        }
    }

    fn ndjson(entries: &[SealedEntry]) -> String {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    /// Three entries with the old key, a rotation, two with the new one.
    fn rotated_chain(old: &ChainKey, keys: &AuditKeys) -> Vec<SealedEntry> {
        let mut chain = seal_entries(old, None, (1..=3).map(entry)).unwrap();
        let head = ChainHead {
            seq: 3,
            hash: chain[2].hash,
        };
        let mark = ChainMark::of(old, head);
        let plan = SealPlan::new(keys, Some(head), [&mark]).unwrap();
        chain.extend(plan.seal(Some(head), vec![entry(4), entry(5)]).unwrap());
        chain
    }

    #[test]
    fn an_export_verifies_offline_across_a_rotation() {
        let old = ChainKey::new(b"offline-old-audit-key-0123456789abcdef").unwrap();
        let new = ChainKey::new(b"offline-new-audit-key-0123456789abcdef").unwrap();
        let keys = AuditKeys::new(new.clone(), vec![old.clone()]).unwrap();
        let chain = rotated_chain(&old, &keys);
        let text = ndjson(&chain);
        let (report, start) = walk(text.as_bytes(), &keys, None).unwrap();
        assert!(report.intact(), "{report:?}");
        assert_eq!((report.verified_up_to, start), (6, 1));
        let out = render(&report, start, false);
        assert_eq!(
            out,
            format!(
                "intact up to seq 6 (key {} from seq 1, key {} from seq 5)\n",
                old.fingerprint(),
                new.fingerprint()
            )
        );
        // With the old key alone: up to the rotation.
        let (report, _) = walk(text.as_bytes(), &old.clone().into(), None).unwrap();
        assert_eq!(render(&report, 1, false), "first bad seq 5: unknown_key\n");
        // An edited line, a line that is not an entry, a cut end under a checkpoint.
        let edited = text.replacen("\"p2\"", "\"mallory\"", 1);
        let (report, _) = walk(edited.as_bytes(), &keys, None).unwrap();
        assert_eq!(report.first_bad_seq(), Some(2));
        let mut lines: Vec<&str> = text.lines().collect();
        lines[3] = "not json";
        let (report, _) = walk(lines.join("\n").as_bytes(), &keys, None).unwrap();
        assert_eq!(
            (report.first_bad_seq(), report.reason()),
            (Some(4), Some("malformed_entry"))
        );
        let cp = Checkpoint::new(
            &new,
            ChainHead {
                seq: 6,
                hash: chain[5].hash,
            },
        );
        let cut = ndjson(&chain[..5]);
        let (report, _) = walk(cut.as_bytes(), &keys, Some(cp)).unwrap();
        assert_eq!(report.reason(), Some("chain_truncated"));
        // An export after the genesis: its first entry is the start.
        let tail = ndjson(&chain[2..]);
        let (report, start) = walk(tail.as_bytes(), &keys, None).unwrap();
        assert!(report.intact() && report.verified_up_to == 6 && start == 3);
        assert!(render(&report, start, false).contains("starts at seq 3"));
        // Nothing to verify is not "intact".
        assert!(walk("".as_bytes(), &keys, None).is_err());
        assert!(walk("{}\n".as_bytes(), &keys, None).is_err());
    }
}
