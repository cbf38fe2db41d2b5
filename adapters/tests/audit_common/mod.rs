//! What the SQLite and Postgres audit tests share: tampering with the sealed rows
//! directly in SQL, and checking that verification detects AND locates each change.

use std::future::Future;
use std::sync::Arc;

use vivified_conformance::audit::{audit_entry, test_chain_key};
use vivified_domain::audit_chain::verify_log;
use vivified_domain::audit_chain::{ChainKey, ChainVerifier, Checkpoint};
use vivified_ports::{AuditError, AuditLog, AuditOutcome};

/// How many entries each scenario seals before tampering.
pub const SEEDED: u64 = 10;

/// One way to tamper, and where verification must find it.
pub struct Scenario {
    pub name: &'static str,
    /// Statements run against the database after sealing `SEEDED` entries.
    pub sql: Vec<String>,
    /// Entries appended and sealed after the tampering (the chain regrows).
    pub regrow: u64,
    /// Verify against a checkpoint of the head taken before the tampering.
    pub with_checkpoint: bool,
    /// `(first_bad_seq, reason)`, or `None` if the chain must still verify.
    pub expect: Option<(u64, &'static str)>,
}

fn sc(
    name: &'static str,
    sql: &[&str],
    with_checkpoint: bool,
    expect: Option<(u64, &'static str)>,
) -> Scenario {
    Scenario {
        name,
        sql: sql.iter().map(|s| (*s).to_owned()).collect(),
        regrow: 0,
        with_checkpoint,
        expect,
    }
}

/// The scenarios; `blob` writes a byte-string literal in the database's dialect.
pub fn scenarios(blob: fn(&[u8]) -> String) -> Vec<Scenario> {
    let cols = "at, actor, action, target, outcome, reason, trace_id, details";
    let forged_row = |seq: u64| {
        format!(
            "INSERT INTO audit_entries (seq, {cols}, hash) VALUES ({seq}, 1767225600000000, \
             'admin', 'plugin.deregister', 'victim', 'success', 'forged', 't', 'null', {})",
            blob(&[0x42; 32])
        )
    };
    let mut v = vec![
        sc("untouched", &[], true, None),
        sc(
            "update actor",
            &["UPDATE audit_entries SET actor = 'mallory' WHERE seq = 4"],
            false,
            Some((4, "hash_mismatch")),
        ),
        sc(
            "update details",
            &["UPDATE audit_entries SET details = '{\"n\":999}' WHERE seq = 6"],
            false,
            Some((6, "hash_mismatch")),
        ),
        sc(
            "update time",
            &["UPDATE audit_entries SET at = at + 1 WHERE seq = 2"],
            false,
            Some((2, "hash_mismatch")),
        ),
        sc(
            "update outcome",
            &["UPDATE audit_entries SET outcome = 'denied' WHERE seq = 9"],
            false,
            Some((9, "hash_mismatch")),
        ),
        sc(
            "details no longer JSON",
            &["UPDATE audit_entries SET details = 'not json' WHERE seq = 5"],
            false,
            Some((5, "malformed_entry")),
        ),
        sc(
            "outcome the log never writes",
            &["UPDATE audit_entries SET outcome = 'maybe' WHERE seq = 3"],
            false,
            Some((3, "malformed_entry")),
        ),
        sc(
            "delete a row in the middle",
            &["DELETE FROM audit_entries WHERE seq = 5"],
            false,
            Some((5, "sequence_gap")),
        ),
        sc(
            "delete the first row",
            &["DELETE FROM audit_entries WHERE seq = 1"],
            false,
            Some((1, "sequence_gap")),
        ),
        sc(
            "delete a row and renumber the rest",
            &[
                "DELETE FROM audit_entries WHERE seq = 5",
                "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 5",
                "UPDATE audit_entries SET seq = seq - 1001 WHERE seq > 1000",
            ],
            false,
            Some((5, "hash_mismatch")),
        ),
        sc(
            "swap two rows",
            &[
                "UPDATE audit_entries SET seq = 1003 WHERE seq = 3",
                "UPDATE audit_entries SET seq = 3 WHERE seq = 7",
                "UPDATE audit_entries SET seq = 7 WHERE seq = 1003",
            ],
            false,
            Some((3, "hash_mismatch")),
        ),
        sc(
            "copy a row over another",
            &[
                "UPDATE audit_entries SET (at, actor, action, target, outcome, reason, trace_id, \
               details, hash) = (SELECT at, actor, action, target, outcome, reason, trace_id, \
               details, hash FROM audit_entries WHERE seq = 2) WHERE seq = 8",
            ],
            false,
            Some((8, "hash_mismatch")),
        ),
        sc("hash cut short", &[], false, Some((6, "malformed_entry"))),
        sc(
            "cut rows from the end, no checkpoint",
            &["DELETE FROM audit_entries WHERE seq > 7"],
            false,
            None,
        ),
        sc(
            "cut rows from the end, checkpoint",
            &["DELETE FROM audit_entries WHERE seq > 7"],
            true,
            Some((8, "chain_truncated")),
        ),
        sc(
            "everything deleted, checkpoint",
            &["DELETE FROM audit_entries"],
            true,
            Some((1, "chain_truncated")),
        ),
    ];
    // Built with the dialect's byte literals.
    v.iter_mut()
        .find(|s| s.name == "hash cut short")
        .expect("scenario")
        .sql = vec![format!(
        "UPDATE audit_entries SET hash = {} WHERE seq = 6",
        blob(&[1, 2, 3])
    )];
    v.push(Scenario {
        name: "forged row appended",
        sql: vec![forged_row(SEEDED + 1)],
        regrow: 0,
        with_checkpoint: false,
        expect: Some((SEEDED + 1, "hash_mismatch")),
    });
    v.push(Scenario {
        name: "forged row inserted in the middle",
        sql: vec![
            "UPDATE audit_entries SET seq = seq + 1000 WHERE seq >= 6".to_owned(),
            "UPDATE audit_entries SET seq = seq - 999 WHERE seq > 1000".to_owned(),
            forged_row(6),
        ],
        regrow: 0,
        with_checkpoint: false,
        expect: Some((6, "hash_mismatch")),
    });
    v.push(Scenario {
        name: "last row replayed as a new one",
        sql: vec![format!(
            "INSERT INTO audit_entries (seq, {cols}, hash) SELECT seq + 1, {cols}, hash \
             FROM audit_entries WHERE seq = {SEEDED}"
        )],
        regrow: 0,
        with_checkpoint: false,
        expect: Some((SEEDED + 1, "hash_mismatch")),
    });
    v.push(Scenario {
        name: "cut from the end and regrown, checkpoint",
        sql: vec!["DELETE FROM audit_entries WHERE seq > 7".to_owned()],
        regrow: 5,
        with_checkpoint: true,
        expect: Some((SEEDED, "checkpoint_mismatch")),
    });
    v
}

async fn seal_all(log: &dyn AuditLog, key: &ChainKey) {
    while log.seal(key, 4).await.expect("seal").sealed > 0 {}
}

async fn append_n(log: &dyn AuditLog, from: u64, n: u64) {
    for i in from..from + n {
        let outcome = if i % 3 == 0 {
            AuditOutcome::Denied
        } else {
            AuditOutcome::Success
        };
        log.append(audit_entry("admin", "plugin.disable", outcome, i as i64))
            .await
            .expect("append");
    }
}

/// Runs every scenario on a log from `make_log` (a fresh one, reading what is stored,
/// each time it is called), emptying its tables with `exec` before each.
pub async fn tamper_suite<L, F, Fut>(make_log: L, exec: F, blob: fn(&[u8]) -> String)
where
    L: Fn() -> Arc<dyn AuditLog>,
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let key = test_chain_key();
    for s in scenarios(blob) {
        exec("DELETE FROM audit_entries".to_owned()).await;
        exec("DELETE FROM audit_pending".to_owned()).await;
        exec("DELETE FROM audit_checkpoint".to_owned()).await;
        let mut log = make_log();
        append_n(&*log, 0, SEEDED).await;
        seal_all(&*log, &key).await;
        let head = log.head().await.expect("head").expect("sealed");
        assert_eq!(head.seq, SEEDED, "{}: seeded", s.name);
        let checkpoint = Checkpoint::new(&key, head);
        for sql in &s.sql {
            exec(sql.clone()).await;
        }
        if s.regrow > 0 {
            append_n(&*log, 100, s.regrow).await;
            // The checkpoint stored with the last seal refuses to number after the cut.
            assert!(
                matches!(
                    log.seal(&key, 4).await,
                    Err(AuditError::BehindCheckpoint {
                        head: 7,
                        checkpoint: SEEDED
                    })
                ),
                "{}: no seq is handed out again",
                s.name
            );
            // Unless that is removed too: then only a checkpoint kept elsewhere (the
            // log line's) finds it.
            exec("DELETE FROM audit_checkpoint".to_owned()).await;
            log = make_log();
            seal_all(&*log, &key).await;
        }
        // Small pages: breaks are found across page boundaries too.
        for page in [3, 1000] {
            let mut verifier = ChainVerifier::new(&key);
            if s.with_checkpoint {
                verifier = verifier.with_checkpoint(checkpoint).expect("authentic");
            }
            let report = verify_log(&*log, verifier, page).await.expect("verify");
            let got = report.failure.map(|f| (f.seq, f.reason.as_str()));
            assert_eq!(got, s.expect, "{} (page {page}): {report:?}", s.name);
            if let Some((seq, _)) = s.expect {
                assert_eq!(
                    report.verified_up_to,
                    seq - 1,
                    "{}: intact up to the entry before the first bad one",
                    s.name
                );
            }
        }
    }
    // A wrong key fails at seq 1.
    exec("DELETE FROM audit_entries".to_owned()).await;
    exec("DELETE FROM audit_pending".to_owned()).await;
    exec("DELETE FROM audit_checkpoint".to_owned()).await;
    let log = make_log();
    append_n(&*log, 0, 3).await;
    seal_all(&*log, &key).await;
    let other = ChainKey::new(b"another-key-another-key-another-key!").expect("key");
    let report = verify_log(&*log, ChainVerifier::new(&other), 100)
        .await
        .expect("verify");
    assert_eq!(
        (
            report.first_bad_seq(),
            report.reason(),
            report.verified_up_to
        ),
        (Some(1), Some("hash_mismatch"), 0)
    );
}
