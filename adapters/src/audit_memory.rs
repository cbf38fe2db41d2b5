//! `InMemoryAuditLog`: the audit chain in process memory, for tests, demos and
//! embedding. Passes `audit_log_conformance`; neither durable nor shared between
//! processes, so tamper evidence means little here — the SQL logs are the real thing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::Value;
use vivified_ports::audit::{
    ChainHash, ChainHead, ChainKeyRing, ChainMark, SealPlan, StoredCheckpoint, validate_entry,
};
use vivified_ports::audit::{MAX_PAGE, MAX_SEAL_BATCH};
use vivified_ports::{AuditEntry, AuditError, AuditLog, AuditQuery, SealReport, SealedEntry};

/// An [`AuditLog`] in memory: pending entries and the sealed chain behind one lock,
/// one sealer at a time (a flag: a second concurrent sealer returns `busy`).
///
/// Bounded: it keeps at most `capacity` entries, pending and sealed together. When
/// full it drops its oldest sealed entry (a later verification then reports a
/// `sequence_gap` where the kept chain starts: the entries are gone, honestly), or, if
/// nothing is sealed, its oldest pending entry ([`InMemoryAuditLog::dropped`] counts
/// them). Seal regularly and the bound only ever trims the sealed history.
#[derive(Debug)]
pub struct InMemoryAuditLog {
    capacity: usize,
    state: Mutex<State>,
    sealing: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Ascending, consecutive `seq`.
    sealed: VecDeque<SealedKept>,
    pending: VecDeque<Kept>,
    /// The last sealed entry, even when it was dropped.
    head: Option<ChainHead>,
    /// The checkpoint stored with the last seal.
    mark: Option<ChainMark>,
    dropped_pending: u64,
}

/// An entry as kept: its details as the canonical JSON [`validate_entry`] returned on
/// append, parsed back when the entry is read (`entry.details` is `Null`). Sealing
/// then neither checks nor encodes an entry a second time, and a kept entry holds a
/// few dozen bytes of text instead of a `serde_json` object, whose map node alone is
/// some 600 bytes.
#[derive(Debug)]
struct Kept {
    entry: AuditEntry,
    details: Box<str>,
}

impl Kept {
    fn new(mut entry: AuditEntry) -> Result<Self, AuditError> {
        let details = validate_entry(&entry)?.into_boxed_str();
        entry.details = Value::Null;
        Ok(Self {
            entry: entry.normalized(),
            details,
        })
    }

    /// The entry as appended.
    fn read(&self) -> AuditEntry {
        AuditEntry {
            // Canonical JSON always parses, to the value it was written from.
            details: serde_json::from_str(&self.details)
                .unwrap_or_else(|_| Value::String(self.details.to_string())),
            ..self.entry.clone()
        }
    }
}

/// A kept entry with its place in the chain.
#[derive(Debug)]
struct SealedKept {
    seq: u64,
    hash: ChainHash,
    kept: Kept,
}

impl SealedKept {
    /// The sealed entry as appended.
    fn read(&self) -> SealedEntry {
        SealedEntry {
            seq: self.seq,
            entry: self.kept.read(),
            hash: self.hash,
        }
    }
}

impl InMemoryAuditLog {
    /// A log keeping at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            sealing: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the entries kept, sealed and then pending, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        let state = self.state();
        state
            .sealed
            .iter()
            .map(|e| e.kept.read())
            .chain(state.pending.iter().map(Kept::read))
            .collect()
    }

    /// How many pending entries were dropped, never sealed, because the log was full.
    pub fn dropped(&self) -> u64 {
        self.state().dropped_pending
    }
}

/// Clears the sealing flag when a seal ends, however it ends.
struct SealingGuard<'a>(&'a AtomicBool);

impl Drop for SealingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[async_trait]
impl AuditLog for InMemoryAuditLog {
    async fn append(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let kept = Kept::new(entry)?;
        let mut state = self.state();
        if state.sealed.len() + state.pending.len() >= self.capacity
            && state.sealed.pop_front().is_none()
            && state.pending.pop_front().is_some()
        {
            state.dropped_pending += 1;
        }
        state.pending.push_back(kept);
        Ok(())
    }

    async fn seal(
        &self,
        keys: &(dyn ChainKeyRing + 'static),
        limit: usize,
    ) -> Result<SealReport, AuditError> {
        if self.sealing.swap(true, Ordering::AcqRel) {
            return Ok(SealReport {
                sealed: 0,
                head: self.state().head,
                busy: true,
            });
        }
        let _guard = SealingGuard(&self.sealing);
        let mut state = self.state();
        let plan = SealPlan::new(keys, state.head, state.mark.as_ref())?;
        let n = limit.min(MAX_SEAL_BATCH).min(state.pending.len());
        if n > 0
            && let Some(rotation) = state
                .pending
                .front()
                .and_then(|first| plan.rotation_entry(first.entry.at))
        {
            // Sealed first, with the old key, as the entries after it are with the new.
            state.pending.push_front(Kept::new(rotation)?);
        }
        let n = n + usize::from(n > 0 && plan.rotates());
        // The hashes are computed over the entries where they are, which are then moved
        // (not copied) into the sealed history; the lock is held throughout. Validated
        // on append, so hashing cannot fail; were it to, nothing changes.
        let (mut seq, mut prev) = state
            .head
            .map_or((0, ChainHash::GENESIS), |h| (h.seq, h.hash));
        let mut hashes = Vec::with_capacity(n);
        for (i, kept) in state.pending.iter().take(n).enumerate() {
            seq = seq.saturating_add(1);
            prev = plan
                .key_for(i)
                .chain_hash(&prev, seq, &kept.entry, &kept.details)?;
            hashes.push((seq, prev));
        }
        let sealed: Vec<SealedKept> = state
            .pending
            .drain(..n)
            .zip(hashes)
            .map(|(kept, (seq, hash))| SealedKept { seq, hash, kept })
            .collect();
        if let Some(last) = sealed.last() {
            let head = ChainHead {
                seq: last.seq,
                hash: last.hash,
            };
            state.head = Some(head);
            state.mark = Some(plan.checkpoint(head));
        }
        state.sealed.extend(sealed);
        Ok(SealReport {
            sealed: n as u64,
            head: state.head,
            busy: false,
        })
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        Ok(self
            .state()
            .mark
            .map(|mark| StoredCheckpoint {
                place: "memory".to_owned(),
                mark: Some(mark),
            })
            .into_iter()
            .collect())
    }

    async fn range(&self, from_seq: u64, limit: usize) -> Result<Vec<SealedEntry>, AuditError> {
        let state = self.state();
        let Some(first) = state.sealed.front().map(|e| e.seq) else {
            return Ok(Vec::new());
        };
        let skip = usize::try_from(from_seq.saturating_sub(first)).unwrap_or(usize::MAX);
        Ok(state
            .sealed
            .iter()
            .skip(skip)
            .take(limit.min(MAX_PAGE))
            .map(SealedKept::read)
            .collect())
    }

    async fn head(&self) -> Result<Option<ChainHead>, AuditError> {
        Ok(self.state().head)
    }

    async fn pending(&self) -> Result<u64, AuditError> {
        Ok(self.state().pending.len() as u64)
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<SealedEntry>, AuditError> {
        let state = self.state();
        let matches = |e: &&SealedKept| {
            let e = &e.kept.entry;
            query.actor.as_ref().is_none_or(|a| *a == e.actor)
                && query.action.as_ref().is_none_or(|a| *a == e.action)
                && query.outcome.is_none_or(|o| o == e.outcome)
        };
        let limit = query.limit.min(MAX_PAGE);
        let out = if query.newest_first {
            let before = query.after.unwrap_or(u64::MAX);
            state
                .sealed
                .iter()
                .rev()
                .skip_while(|e| e.seq >= before)
                .filter(matches)
                .take(limit)
                .map(SealedKept::read)
                .collect()
        } else {
            let after = query.after.unwrap_or(0);
            state
                .sealed
                .iter()
                .skip_while(|e| e.seq <= after)
                .filter(matches)
                .take(limit)
                .map(SealedKept::read)
                .collect()
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vivified_conformance::audit::{audit_entry, test_chain_key};
    use vivified_ports::AuditOutcome;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_audit_log_passes_the_conformance_suite() {
        vivified_conformance::audit::audit_log_conformance(Arc::new(InMemoryAuditLog::new(
            100_000,
        )))
        .await;
    }

    #[tokio::test]
    async fn details_kept_as_text_read_back_as_appended() {
        let log = InMemoryAuditLog::new(10);
        let mut entry = audit_entry("system", "a", AuditOutcome::Success, 1);
        entry.details = serde_json::json!({
            "max": u64::MAX, "min": i64::MIN, "text": "q\"\\\n\u{1}é😀",
            "list": [null, true, [], {}], "z": {"b": 1, "a": -1}
        });
        log.append(entry.clone()).await.unwrap();
        let expected = entry.normalized();
        assert_eq!(log.entries(), std::slice::from_ref(&expected));
        log.seal(&test_chain_key(), 10).await.unwrap();
        assert_eq!(log.entries(), std::slice::from_ref(&expected));
        assert_eq!(log.range(1, 10).await.unwrap()[0].entry, expected);
        let query = AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        };
        assert_eq!(log.query(&query).await.unwrap()[0].entry, expected);
    }

    #[tokio::test]
    async fn audit_ring_keeps_the_newest() {
        let log = InMemoryAuditLog::new(2);
        for i in 0..3 {
            log.append(audit_entry(
                "system",
                &format!("a{i}"),
                AuditOutcome::Success,
                i,
            ))
            .await
            .unwrap();
        }
        let actions: Vec<_> = log.entries().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["a1", "a2"]);
        assert_eq!(log.dropped(), 1);
        // Sealed history is trimmed first, and verification says so.
        let key = test_chain_key();
        log.seal(&key, 10).await.unwrap();
        log.append(audit_entry("system", "a3", AuditOutcome::Success, 3))
            .await
            .unwrap();
        assert_eq!(log.dropped(), 1);
        let kept: Vec<_> = log.entries().into_iter().map(|e| e.action).collect();
        assert_eq!(kept, ["a2", "a3"]);
        let report = vivified_domain::audit_chain::verify_log(
            &log,
            vivified_domain::audit_chain::ChainVerifier::new(&key),
            10,
        )
        .await
        .unwrap();
        assert_eq!(report.first_bad_seq(), Some(1));
        assert_eq!(report.reason(), Some("sequence_gap"));
    }

    #[tokio::test]
    async fn a_second_sealer_is_turned_away() {
        let log = InMemoryAuditLog::new(10);
        log.sealing.store(true, Ordering::SeqCst);
        log.append(audit_entry("system", "x", AuditOutcome::Success, 0))
            .await
            .unwrap();
        let r = log.seal(&test_chain_key(), 10).await.unwrap();
        assert_eq!((r.sealed, r.busy), (0, true));
        log.sealing.store(false, Ordering::SeqCst);
        let r = log.seal(&test_chain_key(), 10).await.unwrap();
        assert_eq!((r.sealed, r.busy), (1, false));
    }
}
