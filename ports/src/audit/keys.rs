//! Key rotation: the keys a sealer holds ([`ChainKeyRing`]) and the plan of one seal
//! ([`SealPlan`]) — which key is in force at the chain's head, and whether this seal
//! rotates to the sealer's current key.
//!
//! The rule every sealer and verifier follows:
//!
//! - the checkpoint a seal stores with its batch is made with the key in force after
//!   the batch, so the checkpoint at the head names (by its MAC) the key that sealed
//!   the head;
//! - when that key is an older key of the sealer's, the batch starts with an
//!   [`KEY_ROTATED_ACTION`] entry sealed with the **old** key, whose details name the
//!   old and the new key's ids (`previous_key`, `key`); every entry after it is sealed
//!   with the new key;
//! - when it is none of the sealer's keys (another replica has rotated to a key this
//!   one does not hold, or the checkpoint was altered), the sealer seals nothing:
//!   [`AuditError::UnknownKey`]. The chain never forks into two keys.

use serde_json::json;

use super::{
    AuditEntry, AuditError, AuditOutcome, ChainHasher, ChainHead, ChainMark, SealedEntry,
    seal_entries,
};

/// The action of the entry that hands the chain from one key to the next.
pub const KEY_ROTATED_ACTION: &str = "audit.key_rotated";

/// The keys a sealer holds: the current one, which seals, and older ones it recognises
/// at the chain's head (and rotates away from). Every [`ChainHasher`] is a ring of one.
pub trait ChainKeyRing: Send + Sync {
    /// The key that seals new entries.
    fn current(&self) -> &dyn ChainHasher;

    /// The `i`-th older key (0: the newest of them), or `None` past the last.
    fn previous(&self, i: usize) -> Option<&dyn ChainHasher> {
        let _ = i;
        None
    }
}

impl<T: ChainHasher> ChainKeyRing for T {
    fn current(&self) -> &dyn ChainHasher {
        self
    }
}

/// Every key of `ring`, the current one first.
fn all_keys(ring: &dyn ChainKeyRing) -> impl Iterator<Item = &dyn ChainHasher> {
    std::iter::once(ring.current()).chain((0..).map_while(|i| ring.previous(i)))
}

/// Whether `mark` is authentic under any key of `ring`.
pub fn is_authentic_in(ring: &dyn ChainKeyRing, mark: &ChainMark) -> bool {
    all_keys(ring).any(|k| k.is_authentic(mark))
}

/// How one seal chains its batch: planned by [`SealPlan::new`] inside the sealer's
/// lock, from the head and the checkpoints stored beside the chain.
pub struct SealPlan<'a> {
    current: &'a dyn ChainHasher,
    /// The older key in force at the head, when this seal rotates away from it.
    rotate_from: Option<&'a dyn ChainHasher>,
}

impl<'a> SealPlan<'a> {
    /// Plans a seal after `head` (`None`: an empty chain), given the checkpoints
    /// `stored` beside the chain. First checks that no authentic checkpoint lies beyond
    /// the head (else entries were cut from the chain's end, and their numbers must
    /// not be handed out again). Then finds the key in force: the one whose checkpoint
    /// at the head is authentic (the current key before an older one); a chain with no
    /// checkpoint at its head (sealed before checkpoints were kept) is taken as sealed
    /// with the current key when the ring holds no other.
    ///
    /// # Errors
    /// [`AuditError::BehindCheckpoint`]; [`AuditError::UnknownKey`] when no key of the
    /// ring can be shown to be in force at the head.
    pub fn new<'m>(
        ring: &'a dyn ChainKeyRing,
        head: Option<ChainHead>,
        stored: impl IntoIterator<Item = &'m ChainMark>,
    ) -> Result<Self, AuditError> {
        let stored: Vec<&ChainMark> = stored.into_iter().collect();
        let at = head.map_or(0, |h| h.seq);
        if let Some(beyond) = stored
            .iter()
            .filter(|m| m.head.seq > at && is_authentic_in(ring, m))
            .map(|m| m.head.seq)
            .max()
        {
            return Err(AuditError::BehindCheckpoint {
                head: at,
                checkpoint: beyond,
            });
        }
        let current = ring.current();
        let Some(head) = head else {
            return Ok(Self {
                current,
                rotate_from: None,
            });
        };
        let at_head: Vec<&ChainMark> = stored.into_iter().filter(|m| m.head == head).collect();
        let in_force = all_keys(ring)
            .enumerate()
            .find(|(_, k)| at_head.iter().any(|m| k.is_authentic(m)));
        match in_force {
            Some((0, _)) => Ok(Self {
                current,
                rotate_from: None,
            }),
            Some((_, old)) => Ok(Self {
                current,
                rotate_from: Some(old),
            }),
            None if at_head.is_empty() && ring.previous(0).is_none() => Ok(Self {
                current,
                rotate_from: None,
            }),
            None => Err(AuditError::UnknownKey { seq: head.seq }),
        }
    }

    /// Whether this seal starts with an [`KEY_ROTATED_ACTION`] entry.
    pub fn rotates(&self) -> bool {
        self.rotate_from.is_some()
    }

    /// The [`KEY_ROTATED_ACTION`] entry this seal starts with (dated `at`, the time of
    /// the first entry it precedes), if it rotates.
    pub fn rotation_entry(&self, at: time::OffsetDateTime) -> Option<AuditEntry> {
        let old = self.rotate_from?;
        Some(AuditEntry {
            at,
            actor: "system".into(),
            action: KEY_ROTATED_ACTION.into(),
            target: "core".into(),
            outcome: AuditOutcome::Success,
            reason: "key_rotated".into(),
            trace_id: "system".into(),
            details: json!({ "previous_key": old.key_id(), "key": self.current.key_id() }),
        })
    }

    /// The key that chains the batch's `index`-th entry (0-based, counting the
    /// rotation entry): the old key for the rotation entry, else the current key.
    pub fn key_for(&self, index: usize) -> &'a dyn ChainHasher {
        match self.rotate_from {
            Some(old) if index == 0 => old,
            _ => self.current,
        }
    }

    /// Seals `entries` after `head` (as [`seal_entries`]), preceded by the rotation
    /// entry if this seal rotates. Nothing to seal: nothing sealed, and no rotation.
    ///
    /// # Errors
    /// [`AuditError::InvalidEntry`] for the first entry that cannot be encoded.
    pub fn seal(
        &self,
        head: Option<ChainHead>,
        entries: Vec<AuditEntry>,
    ) -> Result<Vec<SealedEntry>, AuditError> {
        let Some(first) = entries.first() else {
            return Ok(Vec::new());
        };
        let Some(rotation) = self.rotation_entry(first.at) else {
            return Ok(seal_entries(self.current, head, entries)?);
        };
        let mut sealed = seal_entries(self.key_for(0), head, [rotation])?;
        let after = sealed.last().map(|e| ChainHead {
            seq: e.seq,
            hash: e.hash,
        });
        sealed.extend(seal_entries(self.current, after, entries)?);
        Ok(sealed)
    }

    /// The checkpoint to store with a batch that ends at `head` (made with the current
    /// key, which is in force after any batch).
    pub fn checkpoint(&self, head: ChainHead) -> ChainMark {
        ChainMark::of(self.current, head)
    }
}

impl std::fmt::Debug for SealPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealPlan")
            .field("current", &self.current.key_id())
            .field("rotate_from", &self.rotate_from.map(|k| k.key_id()))
            .finish()
    }
}
