//! Verification: walks a sealed chain page by page and reports "intact up to N" or the
//! first bad sequence number with a reason.

use std::fmt;

use serde::{Deserialize, Serialize};
use vivified_ports::audit::{AuditError, AuditLog, ChainHash, ChainHead, MAX_PAGE, SealedEntry};

use super::{ChainKey, Checkpoint, KEY_ROTATED_ACTION, canonical_entry};

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
    /// The entry follows a key rotation to a key the verifier does not hold (give it
    /// that key, with the older ones as previous keys).
    UnknownKey,
}

impl FailureReason {
    /// The code: `hash_mismatch`, `sequence_gap`, `sequence_out_of_order`,
    /// `malformed_entry`, `checkpoint_mismatch`, `chain_truncated`, `unknown_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HashMismatch => "hash_mismatch",
            Self::SequenceGap => "sequence_gap",
            Self::SequenceOutOfOrder => "sequence_out_of_order",
            Self::MalformedEntry => "malformed_entry",
            Self::CheckpointMismatch => "checkpoint_mismatch",
            Self::ChainTruncated => "chain_truncated",
            Self::UnknownKey => "unknown_key",
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

/// Where a key took over the chain, in a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpan {
    /// The key's fingerprint ([`ChainKey::fingerprint`]).
    pub key: String,
    /// The first entry it sealed (or will seal: a rotation at the chain's end names
    /// the next key before it has sealed anything).
    pub from_seq: u64,
}

/// The outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The highest sequence number up to which the chain is intact (0: none).
    pub verified_up_to: u64,
    /// The last verified position (its hash), from which a later verification can
    /// resume ([`ChainVerifier::resume`]); `None` if nothing was verified.
    pub head: Option<ChainHead>,
    /// The first break, if any.
    pub failure: Option<ChainFailure>,
    /// Where each key took over within what was verified: the key of the first entry
    /// verified, then one span per `audit.key_rotated` entry.
    pub keys: Vec<KeySpan>,
    /// The fingerprint of the key in force after `head` (what the next entry must be
    /// sealed with; give it to [`ChainVerifier::resume`]); `None` before anything was
    /// verified.
    pub key: Option<String>,
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

/// Which key the next entry must be sealed with.
#[derive(Clone, Debug, PartialEq, Eq)]
enum InForce {
    /// Not known yet (the genesis, or a resume without a key): any key held.
    Any,
    /// The verifier's key at this index.
    Held(usize),
    /// A key the verifier does not hold (its fingerprint).
    Foreign(String),
}

/// Walks a chain in ascending sequence order, fed one page at a time (so a long chain
/// never has to be in memory, and a server can yield between pages), and reports
/// "intact up to N" or the first bad sequence number with a reason.
///
/// With several keys ([`super::AuditKeys`]) it follows the chain's key rotations: the
/// first entry may be sealed with any of them; after that every entry must be sealed
/// with the key in force, which only an authentic `audit.key_rotated` entry changes (to
/// the key it names). A rotation entry that is missing, forged or altered is a
/// `hash_mismatch` at its place; a rotation to a key the verifier does not hold makes
/// the next entry `unknown_key`.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    keys: Vec<ChainKey>,
    in_force: InForce,
    spans: Vec<KeySpan>,
    next_seq: u64,
    prev: ChainHash,
    last: Option<ChainHead>,
    failure: Option<ChainFailure>,
    checkpoint: Option<Checkpoint>,
}

impl ChainVerifier {
    /// Verifies from the genesis (seq 1) with `keys` (a [`ChainKey`], or an
    /// [`super::AuditKeys`]).
    pub fn new(keys: &(impl AsRef<[ChainKey]> + ?Sized)) -> Self {
        Self {
            keys: keys.as_ref().to_vec(),
            in_force: InForce::Any,
            spans: Vec::new(),
            next_seq: 1,
            prev: ChainHash::GENESIS,
            last: None,
            failure: None,
            checkpoint: None,
        }
    }

    /// Verifies from `after.seq + 1`, trusting `after` (the head of an earlier
    /// verification, or an authentic checkpoint's position) and, when given, that the
    /// key with fingerprint `key` is in force there (the report's
    /// [`VerifyReport::key`]); without it, the next entry may be sealed with any key
    /// held.
    pub fn resume(
        keys: &(impl AsRef<[ChainKey]> + ?Sized),
        after: ChainHead,
        key: Option<&str>,
    ) -> Self {
        let keys = keys.as_ref().to_vec();
        let in_force = match key {
            None => InForce::Any,
            Some(id) => keys
                .iter()
                .position(|k| k.fingerprint() == id)
                .map_or_else(|| InForce::Foreign(id.to_owned()), InForce::Held),
        };
        Self {
            keys,
            in_force,
            spans: Vec::new(),
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
        if !checkpoint.is_authentic(&self.keys) {
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
        let bytes = match canonical_entry(e.seq, &e.entry) {
            Ok(b) => b,
            Err(_) => return self.fail(e.seq, FailureReason::MalformedEntry),
        };
        let candidates = match &self.in_force {
            InForce::Foreign(_) => return self.fail(e.seq, FailureReason::UnknownKey),
            InForce::Held(i) => *i..*i + 1,
            InForce::Any => 0..self.keys.len(),
        };
        let prev = self.prev;
        let Some((sealer, hash)) = candidates
            .map(|i| (i, self.keys[i].hash_of(&prev, &bytes)))
            .find(|(_, h)| h.ct_eq(&e.hash))
        else {
            return self.fail(e.seq, FailureReason::HashMismatch);
        };
        if self.in_force == InForce::Any {
            self.spans.push(KeySpan {
                key: self.keys[sealer].fingerprint(),
                from_seq: e.seq,
            });
        }
        self.in_force = InForce::Held(sealer);
        if e.entry.action == KEY_ROTATED_ACTION {
            let Some(next) = e.entry.details.get("key").and_then(|k| k.as_str()) else {
                return self.fail(e.seq, FailureReason::MalformedEntry);
            };
            self.in_force = self
                .keys
                .iter()
                .position(|k| k.fingerprint() == next)
                .map_or_else(|| InForce::Foreign(next.to_owned()), InForce::Held);
            self.spans.push(KeySpan {
                key: next.to_owned(),
                from_seq: e.seq.saturating_add(1),
            });
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
            keys: self.spans.clone(),
            key: match &self.in_force {
                InForce::Any => None,
                InForce::Held(i) => Some(self.keys[*i].fingerprint()),
                InForce::Foreign(id) => Some(id.clone()),
            },
        }
    }
}

/// Verifies a whole chain held in memory, from the genesis, against an optional
/// checkpoint.
///
/// # Errors
/// As [`ChainVerifier::with_checkpoint`].
pub fn verify_entries(
    key: &(impl AsRef<[ChainKey]> + ?Sized),
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

/// Walks the sealed chain of `log` with `verifier` (from the genesis, or resumed, and
/// with a checkpoint if it has one) to its end, `page` entries per read, and reports
/// "intact up to N" or the first bad sequence number. An entry the store cannot decode
/// is reported as `malformed_entry` at its place.
///
/// # Errors
/// [`AuditError::Unavailable`] if the log cannot be read.
pub async fn verify_log(
    log: &dyn AuditLog,
    mut verifier: ChainVerifier,
    page: usize,
) -> Result<VerifyReport, AuditError> {
    let page = page.clamp(1, MAX_PAGE);
    loop {
        let from = verifier.next_seq();
        match log.range(from, page).await {
            Ok(entries) => {
                if entries.is_empty() {
                    return Ok(verifier.finish());
                }
                if !verifier.feed(&entries) {
                    return Ok(verifier.report());
                }
            }
            Err(AuditError::CorruptEntry { seq }) => {
                // Verify what precedes the undecodable entry, then report it.
                if seq > from {
                    let before = usize::try_from(seq - from).unwrap_or(MAX_PAGE);
                    match log.range(from, before.min(page)).await {
                        Ok(entries) => {
                            let entries: Vec<_> =
                                entries.into_iter().filter(|e| e.seq < seq).collect();
                            if !verifier.feed(&entries) {
                                return Ok(verifier.report());
                            }
                            if verifier.next_seq() < seq && !entries.is_empty() {
                                // More pages lie before it; carry on reading.
                                continue;
                            }
                        }
                        Err(AuditError::CorruptEntry { seq: earlier }) => {
                            verifier.malformed(earlier);
                            return Ok(verifier.report());
                        }
                        Err(e) => return Err(e),
                    }
                }
                verifier.malformed(seq);
                return Ok(verifier.report());
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_chain::seal_entries;
    use crate::audit_chain::tests::{entry, key};

    fn chain(n: usize) -> Vec<SealedEntry> {
        seal_entries(&key(), None, (0..n).map(|i| entry(&format!("a{i}")))).unwrap()
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
        let mut w = ChainVerifier::resume(&key(), head, None);
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

    #[test]
    fn verification_walks_across_key_rotations() {
        use crate::audit_chain::AuditKeys;
        use vivified_ports::audit::{ChainMark, SealPlan};
        let old = key();
        let new = ChainKey::new(b"the-next-audit-key-0123456789abcdef").unwrap();
        let keys = AuditKeys::new(new.clone(), vec![old.clone()]).unwrap();
        assert_eq!(
            AuditKeys::new(old.clone(), vec![new.clone(), old.clone()]).unwrap_err(),
            crate::audit_chain::DuplicateChainKey(old.fingerprint())
        );
        // Three entries sealed with the old key, then a seal with the new one: the
        // rotation entry (4, old key), then 5 and 6 (new key).
        let mut c = chain(3);
        let head3 = ChainHead {
            seq: 3,
            hash: c[2].hash,
        };
        let mark = ChainMark::of(&old, head3);
        let plan = SealPlan::new(&keys, Some(head3), [&mark]).unwrap();
        c.extend(
            plan.seal(Some(head3), vec![entry("a3"), entry("a4")])
                .unwrap(),
        );
        assert_eq!(c[3].entry.action, KEY_ROTATED_ACTION);
        let span = |key: &ChainKey, from_seq| KeySpan {
            key: key.fingerprint(),
            from_seq,
        };
        let r = verify_entries(&keys, &c, None).unwrap();
        assert!(r.intact(), "{r:?}");
        assert_eq!(r.verified_up_to, 6);
        assert_eq!(r.keys, [span(&old, 1), span(&new, 5)]);
        assert_eq!(r.key, Some(new.fingerprint()));
        // A verifier that holds only the old key stops where the new key took over.
        let r = verify_entries(&old, &c, None).unwrap();
        assert_eq!(
            (r.verified_up_to, r.failure),
            (
                4,
                Some(ChainFailure {
                    seq: 5,
                    reason: FailureReason::UnknownKey
                })
            )
        );
        // The new key alone cannot verify what the old one sealed.
        let r = verify_entries(&new, &c, None).unwrap();
        assert_eq!(r.first_bad_seq(), Some(1));
        let fail = |c: &[SealedEntry]| verify_entries(&keys, c, None).unwrap().failure;
        let hash_mismatch = |seq| {
            Some(ChainFailure {
                seq,
                reason: FailureReason::HashMismatch,
            })
        };
        // The rotation entry altered (naming another key), removed, or removed with the
        // entries after it renumbered: broken at its place.
        let mut altered = c.clone();
        altered[3].entry.details =
            serde_json::json!({"previous_key": old.fingerprint(), "key": "0000000000000000"});
        assert_eq!(fail(&altered), hash_mismatch(4));
        let mut removed = c.clone();
        removed.remove(3);
        for e in &mut removed[3..] {
            e.seq -= 1;
        }
        assert_eq!(fail(&removed), hash_mismatch(4));
        // No rotation entry: the new key's entries straight after the old key's.
        let mut skipped = chain(3);
        skipped.extend(seal_entries(&new, Some(head3), [entry("a3")]).unwrap());
        assert_eq!(fail(&skipped), hash_mismatch(4));
        // A forged rotation entry (a key that did not seal the head).
        let mut forged = chain(3);
        let backwards = AuditKeys::new(old.clone(), vec![new.clone()]).unwrap();
        let plan = SealPlan::new(&backwards, Some(head3), [&ChainMark::of(&new, head3)]).unwrap();
        forged.extend(plan.seal(Some(head3), vec![entry("a3")]).unwrap());
        assert_eq!(fail(&forged), hash_mismatch(4));
        // Resumed after the rotation, with the key in force there, or the wrong one.
        let head4 = ChainHead {
            seq: 4,
            hash: c[3].hash,
        };
        let mut v = ChainVerifier::resume(&keys, head4, Some(&new.fingerprint()));
        assert!(v.feed(&c[4..]));
        assert_eq!(v.finish().verified_up_to, 6);
        let mut v = ChainVerifier::resume(&keys, head4, Some(&old.fingerprint()));
        assert!(!v.feed(&c[4..]));
        assert_eq!(v.report().failure, hash_mismatch(5));
        let mut v = ChainVerifier::resume(&old, head4, Some(&new.fingerprint()));
        assert!(!v.feed(&c[4..]));
        assert_eq!(v.report().first_bad_seq(), Some(5));
        // Checkpoints of either key are authentic to the ring.
        let cp = Checkpoint::new(&old, head3);
        assert!(cp.is_authentic(&keys) && !cp.is_authentic(&new));
    }
}
