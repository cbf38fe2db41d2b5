//! The [`AuditLog`] conformance suite: the executable form of the
//! MUST sentences in `audit.rs`, run against every adapter.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::future::{join, join_all};
use serde_json::json;
use time::Duration;

use vivified_domain::audit_chain::{
    AuditKeys, ChainKey, ChainVerifier, Checkpoint, FailureReason, KEY_ROTATED_ACTION, KeySpan,
    check_stored_checkpoints, seal_entries, verify_log,
};
use vivified_ports::audit::ChainHasher;
use vivified_ports::audit::{
    AuditEntry, AuditError, AuditLog, AuditOutcome, AuditQuery, ChainHead, EntryError,
    MAX_DETAILS_BYTES, MAX_PAGE, SealedEntry,
};

use crate::store::t0;

/// The key the suite seals with.
pub fn test_chain_key() -> ChainKey {
    ChainKey::new(b"vivified-audit-conformance-key-0123456789").expect("long enough")
}

/// An entry for tests: `at` is `t0()` plus `n` microseconds and 789 nanoseconds (which
/// a store truncates), details name `n`.
pub fn audit_entry(actor: &str, action: &str, outcome: AuditOutcome, n: i64) -> AuditEntry {
    AuditEntry {
        at: t0() + Duration::microseconds(n) + Duration::nanoseconds(789),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("target-{n}"),
        outcome,
        reason: "conformance".to_owned(),
        trace_id: format!("trace-{n}"),
        details: json!({ "n": n, "codes": ["a", "b"], "nested": { "z": null, "a": true } }),
    }
}

/// Runs every check of the [`AuditLog`] contract against `log`, which MUST be empty
/// (nothing pending, nothing sealed) when the suite starts. Panics (failing the calling
/// test) with the contract sentence that was broken.
pub async fn audit_log_conformance(log: Arc<dyn AuditLog>) {
    let key = test_chain_key();
    empty_log_has_no_head(&*log, &key).await;
    seal_follows_append_order(&*log, &key).await;
    invalid_entries_are_refused(&*log, &key).await;
    range_reads_sealed_entries(&*log).await;
    query_filters_orders_and_pages(&*log, &key).await;
    concurrent_appends_and_sealers(&log, &key).await;
    verification_walks_the_chain(&*log, &key).await;
    each_seal_stores_a_checkpoint_of_its_head(&*log, &key).await;
    keys_rotate_without_forking(&*log, &key).await;
}

/// The key the conformance chain rotates to.
pub fn next_chain_key() -> ChainKey {
    ChainKey::new(b"vivified-audit-conformance-next-key-9876543210").expect("long enough")
}

/// The first seal with a ring whose current key is new and whose older key sealed the
/// head starts with one `audit.key_rotated` entry, sealed with the old key and naming
/// both; a sealer that holds only the old key then refuses with `UnknownKey` and seals
/// nothing; the chain verifies across the rotation with both keys, and only up to it
/// with the old one. `key` sealed the log's head (it is not empty).
async fn keys_rotate_without_forking(log: &dyn AuditLog, key: &ChainKey) {
    let new = next_chain_key();
    let ring = AuditKeys::new(new.clone(), vec![key.clone()]).unwrap();
    let before = head(log).await.expect("a sealed chain");
    for n in 0..2 {
        log.append(audit_entry("system", "rotate.a", AuditOutcome::Success, n))
            .await
            .unwrap();
    }
    let r = log
        .seal(&ring, 1000)
        .await
        .expect("a rotating seal MUST succeed");
    assert_eq!(
        r.sealed, 3,
        "a rotating seal MUST seal the rotation entry and the batch"
    );
    let rotated = log.range(before.seq + 1, 3).await.unwrap();
    assert_eq!(rotated[0].entry.action, KEY_ROTATED_ACTION);
    assert_eq!(
        rotated[0].entry.details,
        json!({"previous_key": key.fingerprint(), "key": new.fingerprint()}),
        "the rotation entry MUST name both keys"
    );
    assert_eq!(
        rotated[1..]
            .iter()
            .map(|e| e.entry.action.as_str())
            .collect::<Vec<_>>(),
        ["rotate.a", "rotate.a"],
        "the batch MUST follow the rotation entry, in order"
    );
    for s in log.checkpoints().await.unwrap() {
        let mark = s.mark.expect("a checkpoint");
        assert!(
            new.is_authentic(&mark),
            "{}: the checkpoint MUST be the new key's",
            s.place
        );
    }
    // A replica that still holds only the old key: nothing sealed, nothing lost.
    log.append(audit_entry("system", "rotate.b", AuditOutcome::Success, 2))
        .await
        .unwrap();
    let at = head(log).await;
    assert!(
        matches!(log.seal(key, 1000).await, Err(AuditError::UnknownKey { seq }) if Some(seq) == at.map(|h| h.seq)),
        "a sealer without the key in force MUST refuse with UnknownKey"
    );
    assert_eq!(head(log).await, at, "a refused seal MUST NOT seal anything");
    assert_eq!(
        pending(log).await,
        1,
        "a refused seal MUST keep the entry pending"
    );
    // The new key seals it, without another rotation.
    assert_eq!(log.seal(&ring, 1000).await.unwrap().sealed, 1);
    let end = head(log).await.unwrap();
    let report = verify_log(log, ChainVerifier::new(&ring), 2).await.unwrap();
    assert!(
        report.intact(),
        "the chain MUST verify across a rotation: {report:?}"
    );
    assert_eq!(report.verified_up_to, end.seq);
    assert_eq!(
        report.keys,
        [
            KeySpan {
                key: key.fingerprint(),
                from_seq: 1
            },
            KeySpan {
                key: new.fingerprint(),
                from_seq: before.seq + 2
            }
        ]
    );
    let report = verify_log(log, ChainVerifier::new(key), 50).await.unwrap();
    assert_eq!(
        (report.verified_up_to, report.reason()),
        (before.seq + 1, Some("unknown_key")),
        "the old key alone MUST verify up to the rotation"
    );
    let check = check_stored_checkpoints(log, &ring).await.unwrap();
    assert_eq!(
        (check.failure, check.checkpoint.map(|c| c.head())),
        (None, Some(end))
    );
}

/// Rotation across restarts and replicas of a shared backend: `open` opens the log
/// anew on the same database each time it is called (a restart, or another replica).
/// Seals with the old key; "restarts" with the new key (the old one as previous) and
/// seals (the rotation); a replica still on the old key refuses to seal; after
/// another restart the chain verifies across the rotation. The database MUST be empty.
pub async fn rotation_across_restarts<F, Fut>(mut open: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn AuditLog>>,
{
    let (old, new) = (test_chain_key(), next_chain_key());
    let ring = AuditKeys::new(new.clone(), vec![old.clone()]).unwrap();
    let first = open().await;
    for n in 0..3 {
        first
            .append(audit_entry("system", "old", AuditOutcome::Success, n))
            .await
            .unwrap();
    }
    seal_all(&*first, &old).await;
    drop(first);
    let rotated = open().await;
    let stale = open().await;
    rotated
        .append(audit_entry("system", "new", AuditOutcome::Success, 3))
        .await
        .unwrap();
    assert_eq!(rotated.seal(&ring, 1000).await.unwrap().sealed, 2);
    stale
        .append(audit_entry("system", "stale", AuditOutcome::Success, 4))
        .await
        .unwrap();
    assert!(
        matches!(
            stale.seal(&old, 1000).await,
            Err(AuditError::UnknownKey { seq: 5 })
        ),
        "a replica on the old key MUST refuse to seal after the rotation"
    );
    assert_eq!(rotated.seal(&ring, 1000).await.unwrap().sealed, 1);
    drop((rotated, stale));
    let reopened = open().await;
    let report = verify_log(&*reopened, ChainVerifier::new(&ring), 2)
        .await
        .unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.verified_up_to, 6);
    let spans: Vec<(String, u64)> = report
        .keys
        .iter()
        .map(|s| (s.key.clone(), s.from_seq))
        .collect();
    assert_eq!(spans, [(old.fingerprint(), 1), (new.fingerprint(), 5)]);
    let actions: Vec<String> = reopened
        .range(1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry.action)
        .collect();
    assert_eq!(
        actions,
        ["old", "old", "old", KEY_ROTATED_ACTION, "new", "stale"]
    );
    let check = check_stored_checkpoints(&*reopened, &ring).await.unwrap();
    assert_eq!(check.failure, None);
    assert_eq!(check.checkpoint.map(|c| c.seq), Some(6));
}

/// Every place a log keeps its checkpoint holds, after a seal that sealed entries,
/// an authentic checkpoint of the new head; the domain's check then finds the chain
/// intact against it, and a key that did not seal finds it not authentic.
async fn each_seal_stores_a_checkpoint_of_its_head(log: &dyn AuditLog, key: &ChainKey) {
    for n in 0..3 {
        log.append(audit_entry(
            "system",
            "checkpoint.a",
            AuditOutcome::Success,
            n,
        ))
        .await
        .unwrap();
    }
    seal_all(log, key).await;
    let head = head(log).await.expect("a head");
    let stored = log.checkpoints().await.expect("checkpoints MUST succeed");
    assert!(!stored.is_empty(), "a seal MUST store a checkpoint");
    for s in &stored {
        let mark = s
            .mark
            .unwrap_or_else(|| panic!("{} MUST hold a checkpoint", s.place));
        assert_eq!(
            mark.head, head,
            "{} MUST hold the head's checkpoint",
            s.place
        );
        assert!(
            key.is_authentic(&mark),
            "{}: a checkpoint MUST verify",
            s.place
        );
    }
    let check = check_stored_checkpoints(log, key).await.unwrap();
    assert_eq!(check.failure, None);
    assert_eq!(check.checkpoint.map(|c| c.head()), Some(head));
    let other = ChainKey::new(b"another key of at least thirty-two bytes!!").unwrap();
    let check = check_stored_checkpoints(log, &other).await.unwrap();
    assert_eq!(
        (check.checkpoint, check.not_authentic.len()),
        (None, stored.len())
    );
    // Sealing nothing leaves it where it is.
    log.seal(key, 100).await.unwrap();
    assert_eq!(log.checkpoints().await.unwrap(), stored);
}

async fn pending(log: &dyn AuditLog) -> u64 {
    log.pending().await.expect("pending MUST succeed")
}

async fn head(log: &dyn AuditLog) -> Option<ChainHead> {
    log.head().await.expect("head MUST succeed")
}

async fn seal_all(log: &dyn AuditLog, key: &ChainKey) -> u64 {
    let mut total = 0;
    loop {
        let r = log.seal(key, 1000).await.expect("seal MUST succeed");
        assert!(!r.busy, "a lone sealer MUST NOT find the log busy");
        total += r.sealed;
        if r.sealed == 0 {
            return total;
        }
    }
}

async fn empty_log_has_no_head(log: &dyn AuditLog, key: &ChainKey) {
    assert_eq!(head(log).await, None, "an empty log MUST have no head");
    assert_eq!(
        pending(log).await,
        0,
        "an empty log MUST have nothing pending"
    );
    assert!(log.range(1, 10).await.unwrap().is_empty());
    let r = log
        .seal(key, 100)
        .await
        .expect("sealing nothing MUST succeed");
    assert_eq!((r.sealed, r.head, r.busy), (0, None, false));
    let report = verify_log(log, ChainVerifier::new(key), 10).await.unwrap();
    assert!(report.intact() && report.verified_up_to == 0);
}

async fn seal_follows_append_order(log: &dyn AuditLog, key: &ChainKey) {
    let appended: Vec<AuditEntry> = (0..3)
        .map(|n| audit_entry("system", &format!("order.a{n}"), AuditOutcome::Success, n))
        .collect();
    for e in &appended {
        log.append(e.clone()).await.expect("append MUST succeed");
    }
    assert_eq!(pending(log).await, 3, "appended entries MUST be pending");
    assert!(
        log.range(1, 10).await.unwrap().is_empty(),
        "pending entries MUST NOT be readable as sealed"
    );
    assert_eq!(head(log).await, None);

    let zero = log.seal(key, 0).await.unwrap();
    assert_eq!(zero.sealed, 0, "seal MUST seal at most `limit` entries");
    assert_eq!(pending(log).await, 3);

    let first = log.seal(key, 2).await.expect("seal MUST succeed");
    assert_eq!(
        first.sealed, 2,
        "seal MUST seal up to `limit` pending entries"
    );
    assert_eq!(first.head.map(|h| h.seq), Some(2));
    assert_eq!(
        pending(log).await,
        1,
        "sealed entries MUST no longer be pending"
    );
    let second = log.seal(key, 100).await.expect("seal MUST succeed");
    assert_eq!(second.sealed, 1);
    assert_eq!(second.head.map(|h| h.seq), Some(3));
    assert_eq!(
        head(log).await,
        second.head,
        "head MUST be the last sealed entry"
    );
    let idle = log.seal(key, 100).await.unwrap();
    assert_eq!((idle.sealed, idle.head), (0, second.head));

    let sealed = log.range(1, 10).await.expect("range MUST succeed");
    let expected = seal_entries(
        key,
        None,
        appended.iter().cloned().map(AuditEntry::normalized),
    )
    .expect("encodable");
    assert_eq!(
        sealed, expected,
        "seal MUST assign 1, 2, 3 in append order, with the chain's hashes, and keep \
         every field (time truncated to the microsecond)"
    );
    assert_eq!(
        sealed[0].entry.at,
        t0() + Duration::microseconds(0),
        "at MUST be kept to the microsecond"
    );
}

async fn invalid_entries_are_refused(log: &dyn AuditLog, key: &ChainKey) {
    let before = (pending(log).await, head(log).await);
    let mut big = audit_entry("system", "invalid", AuditOutcome::Denied, 0);
    big.details = json!({ "blob": "x".repeat(MAX_DETAILS_BYTES) });
    let mut float = audit_entry("system", "invalid", AuditOutcome::Denied, 0);
    float.details = json!({ "ratio": 0.5 });
    let mut nul = audit_entry("system", "invalid", AuditOutcome::Denied, 0);
    nul.target = "a\0b".into();
    for (entry, want) in [
        (big, EntryError::DetailsTooLarge),
        (float, EntryError::DetailsFloat),
        (nul, EntryError::ControlCharacter("target")),
    ] {
        match log.append(entry).await {
            Err(AuditError::InvalidEntry(e)) => assert_eq!(e, want),
            other => panic!("append MUST refuse an entry over the limits ({want}): {other:?}"),
        }
    }
    assert_eq!(seal_all(log, key).await, 0);
    assert_eq!(
        (pending(log).await, head(log).await),
        before,
        "a refused entry MUST NOT be stored"
    );
}

async fn range_reads_sealed_entries(log: &dyn AuditLog) {
    let all = log.range(1, 100).await.unwrap();
    let last = all.last().expect("sealed entries").seq;
    assert_eq!(
        log.range(0, 100).await.unwrap(),
        all,
        "range from 0 MUST start at 1"
    );
    let one = log.range(2, 1).await.unwrap();
    assert_eq!(one.len(), 1, "range MUST return at most `limit` entries");
    assert_eq!(one[0].seq, 2, "range MUST start at from_seq");
    assert!(log.range(last + 1, 10).await.unwrap().is_empty());
    assert!(log.range(1, 0).await.unwrap().is_empty());
    assert_eq!(
        log.range(1, usize::MAX).await.unwrap(),
        all,
        "a huge limit MUST be capped, not fail"
    );
}

async fn query_filters_orders_and_pages(log: &dyn AuditLog, key: &ChainKey) {
    let rows = [
        ("q-alice", "q.read", AuditOutcome::Success),
        ("q-bob", "q.read", AuditOutcome::Denied),
        ("q-alice", "q.write", AuditOutcome::Denied),
        ("q-carol", "q.write", AuditOutcome::Success),
        ("q-alice", "q.read", AuditOutcome::Success),
        ("q-bob", "q.write", AuditOutcome::Success),
    ];
    for (n, (actor, action, outcome)) in (100..).zip(rows) {
        log.append(audit_entry(actor, action, outcome, n))
            .await
            .unwrap();
    }
    seal_all(log, key).await;
    // Appended but not sealed: never listed.
    log.append(audit_entry("q-alice", "q.read", AuditOutcome::Success, 199))
        .await
        .unwrap();

    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut query = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut query);
        query
    };
    let run = |query: AuditQuery| async move {
        let got = log.query(&query).await.expect("query MUST succeed");
        got.into_iter()
            .map(|e| (e.seq, e.entry.actor, e.entry.action, e.entry.outcome))
            .collect::<Vec<_>>()
    };
    let base = log
        .range(1, MAX_PAGE)
        .await
        .unwrap()
        .iter()
        .find(|e| e.entry.actor == "q-alice")
        .map(|e| e.seq)
        .expect("sealed query rows");
    let s = |i: u64| base + i;

    let alice = run(q(&|x| x.actor = Some("q-alice".into()))).await;
    assert_eq!(
        alice.iter().map(|r| r.0).collect::<Vec<_>>(),
        [s(0), s(2), s(4)],
        "query MUST filter by actor, oldest first by default, sealed entries only"
    );
    let reads = run(q(&|x| {
        x.action = Some("q.read".into());
        x.outcome = Some(AuditOutcome::Success);
    }))
    .await;
    assert_eq!(
        reads.iter().map(|r| r.0).collect::<Vec<_>>(),
        [s(0), s(4)],
        "query MUST apply every filter"
    );
    let denied = run(q(&|x| x.outcome = Some(AuditOutcome::Denied))).await;
    assert_eq!(denied.iter().map(|r| r.0).collect::<Vec<_>>(), [s(1), s(2)]);

    let newest = run(q(&|x| {
        x.newest_first = true;
        x.limit = 2;
    }))
    .await;
    assert_eq!(
        newest.iter().map(|r| r.0).collect::<Vec<_>>(),
        [s(5), s(4)],
        "newest_first MUST list by descending seq"
    );
    let next = run(q(&|x| {
        x.newest_first = true;
        x.limit = 2;
        x.after = Some(s(4));
    }))
    .await;
    assert_eq!(
        next.iter().map(|r| r.0).collect::<Vec<_>>(),
        [s(3), s(2)],
        "after MUST continue below the cursor newest-first"
    );
    let forward = run(q(&|x| {
        x.limit = 2;
        x.after = Some(s(3));
        x.actor = Some("q-bob".into());
    }))
    .await;
    assert_eq!(
        forward,
        [(
            s(5),
            "q-bob".into(),
            "q.write".into(),
            AuditOutcome::Success
        )],
        "after MUST continue above the cursor oldest-first"
    );
    let bob_newest = run(q(&|x| {
        x.newest_first = true;
        x.actor = Some("q-bob".into());
        x.action = Some("q.read".into());
    }))
    .await;
    assert_eq!(bob_newest.iter().map(|r| r.0).collect::<Vec<_>>(), [s(1)]);
    assert!(run(q(&|x| x.limit = 0)).await.is_empty());
    assert!(
        run(q(&|x| x.actor = Some("nobody".into())))
            .await
            .is_empty()
    );
    // Full entries come back as sealed.
    let full = log
        .query(&q(&|x| x.actor = Some("q-carol".into())))
        .await
        .unwrap();
    assert_eq!(full, log.range(s(3), 1).await.unwrap());

    seal_all(log, key).await;
}

/// A future that yields once, so busy loops in a `join` let the others progress.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

async fn concurrent_appends_and_sealers(log: &Arc<dyn AuditLog>, key: &ChainKey) {
    const WRITERS: usize = 8;
    const EACH: i64 = 25;
    let start = head(&**log).await.map_or(0, |h| h.seq);
    let done = AtomicBool::new(false);
    let appends = async {
        join_all((0..WRITERS).map(|w| {
            let log = Arc::clone(log);
            async move {
                for i in 0..EACH {
                    log.append(audit_entry(
                        &format!("writer-{w}"),
                        "concurrent",
                        AuditOutcome::Success,
                        i,
                    ))
                    .await
                    .expect("concurrent appends MUST all succeed");
                }
            }
        }))
        .await;
        done.store(true, Ordering::SeqCst);
    };
    let sealers = join_all((0..3).map(|_| {
        let log = Arc::clone(log);
        let done = &done;
        async move {
            let mut sealed = 0u64;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let r = log
                    .seal(key, 7)
                    .await
                    .expect("concurrent seals MUST succeed");
                if r.busy {
                    assert_eq!(r.sealed, 0, "a busy sealer MUST seal nothing");
                }
                sealed += r.sealed;
                if r.sealed == 0 {
                    if finished && log.pending().await.expect("pending") == 0 {
                        return sealed;
                    }
                    YieldNow(false).await;
                }
            }
        }
    }));
    let ((), counts) = join(appends, sealers).await;
    let total = (WRITERS as u64) * (EACH as u64);
    assert_eq!(
        counts.iter().sum::<u64>(),
        total,
        "every pending entry MUST be sealed exactly once"
    );
    assert_eq!(pending(&**log).await, 0);

    let mut sealed: Vec<SealedEntry> = Vec::new();
    let mut from = start + 1;
    loop {
        let page = log.range(from, 64).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        sealed.extend(page);
    }
    assert_eq!(sealed.len() as u64, total, "no entry lost, none doubled");
    for (i, e) in sealed.iter().enumerate() {
        assert_eq!(
            e.seq,
            start + 1 + i as u64,
            "sealing MUST assign consecutive sequence numbers: no gap, no fork"
        );
    }
    let mut per_writer: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for e in &sealed {
        assert!(
            seen.insert((e.entry.actor.clone(), e.entry.target.clone())),
            "each entry MUST be sealed once"
        );
        per_writer
            .entry(e.entry.actor.as_str())
            .or_default()
            .push(e.entry.target.clone());
    }
    for (writer, targets) in per_writer {
        let expected: Vec<String> = (0..EACH).map(|i| format!("target-{i}")).collect();
        assert_eq!(
            targets, expected,
            "entries appended one after another MUST be sealed in that order ({writer})"
        );
    }
    assert_eq!(
        head(&**log).await.map(|h| h.seq),
        Some(start + total),
        "head MUST be the last sealed entry"
    );
}

async fn verification_walks_the_chain(log: &dyn AuditLog, key: &ChainKey) {
    let head = head(log).await.expect("sealed entries");
    for page in [1, 7, 1000] {
        let report = verify_log(log, ChainVerifier::new(key), page)
            .await
            .expect("verify MUST read the log");
        assert!(
            report.intact(),
            "an untouched chain MUST verify: {report:?}"
        );
        assert_eq!(report.verified_up_to, head.seq);
        assert_eq!(report.head, Some(head));
    }
    let cp = Checkpoint::new(key, head);
    let with_cp = ChainVerifier::new(key).with_checkpoint(cp).unwrap();
    assert!(verify_log(log, with_cp, 50).await.unwrap().intact());
    // A checkpoint beyond the end: the chain looks cut.
    let beyond = Checkpoint::new(
        key,
        ChainHead {
            seq: head.seq + 3,
            hash: head.hash,
        },
    );
    let cut = ChainVerifier::new(key).with_checkpoint(beyond).unwrap();
    let report = verify_log(log, cut, 50).await.unwrap();
    assert_eq!(
        (report.first_bad_seq(), report.reason()),
        (
            Some(head.seq + 1),
            Some(FailureReason::ChainTruncated.as_str())
        )
    );
    // Resumed from the middle.
    let middle = log.range(head.seq / 2, 1).await.unwrap();
    let middle = ChainHead {
        seq: middle[0].seq,
        hash: middle[0].hash,
    };
    let report = verify_log(log, ChainVerifier::resume(key, middle, None), 16)
        .await
        .unwrap();
    assert!(report.intact() && report.verified_up_to == head.seq);
    // Another key: broken at the first entry.
    let other = ChainKey::new(&[0x5a; 32]).unwrap();
    let report = verify_log(log, ChainVerifier::new(&other), 100)
        .await
        .unwrap();
    assert_eq!(
        (
            report.first_bad_seq(),
            report.reason(),
            report.verified_up_to
        ),
        (Some(1), Some("hash_mismatch"), 0),
        "a wrong key MUST fail verification at seq 1"
    );
}
