//! The chain against the checkpoint its log stores with each seal: a cheap check (a
//! handful of reads, whatever the chain's length) that start-up and `/ready` run, and
//! that finds entries cut from the chain's end while the core was stopped.

use vivified_ports::audit::{AuditError, AuditLog, ChainHead, StoredCheckpoint};

use super::{ChainFailure, ChainKey, Checkpoint, FailureReason};

/// What [`check_stored_checkpoints`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheck {
    /// The chain's head, read after the checkpoints (so a seal between the two reads
    /// is never mistaken for a cut). `None` when there is no authentic checkpoint to
    /// check and the head was not read.
    pub head: Option<ChainHead>,
    /// The highest authentic stored checkpoint (`None`: nothing sealed yet, or none
    /// kept — e.g. a chain sealed before checkpoints were stored).
    pub checkpoint: Option<Checkpoint>,
    /// Where the chain disagrees with it: [`FailureReason::ChainTruncated`] at the
    /// first missing sequence number, or [`FailureReason::CheckpointMismatch`] at the
    /// checkpoint's when the entry there has another hash.
    pub failure: Option<ChainFailure>,
    /// Places holding something that is not an authentic checkpoint of this key
    /// (ignored, and worth a warning: tampering, or another key).
    pub not_authentic: Vec<String>,
}

/// Checks the chain of `log` against its stored checkpoints: its head must reach the
/// highest authentic one, and the entry there must have its hash. The rest of the
/// chain is not walked (`verify_log` does that).
///
/// # Errors
/// [`AuditError::Unavailable`] if the log cannot be read.
pub async fn check_stored_checkpoints(
    log: &dyn AuditLog,
    key: &(impl AsRef<[ChainKey]> + ?Sized),
) -> Result<StoredCheck, AuditError> {
    let (best, not_authentic) = stored_checkpoint(log, key).await?;
    let Some(cp) = best else {
        return Ok(StoredCheck {
            head: None,
            checkpoint: None,
            failure: None,
            not_authentic,
        });
    };
    let chain_head = log.head().await?;
    let head = chain_head.map_or(0, |h| h.seq);
    let failure = if head < cp.seq {
        Some(ChainFailure {
            seq: head.saturating_add(1),
            reason: FailureReason::ChainTruncated,
        })
    } else {
        match log.range(cp.seq, 1).await {
            // An entry missing there is a gap, which a walk of the chain reports.
            Ok(entries) => entries
                .first()
                .filter(|e| e.seq == cp.seq && !e.hash.ct_eq(&cp.hash))
                .map(|e| ChainFailure {
                    seq: e.seq,
                    reason: FailureReason::CheckpointMismatch,
                }),
            Err(AuditError::CorruptEntry { seq }) => Some(ChainFailure {
                seq,
                reason: FailureReason::MalformedEntry,
            }),
            Err(e) => return Err(e),
        }
    };
    Ok(StoredCheck {
        head: chain_head,
        checkpoint: Some(cp),
        failure,
        not_authentic,
    })
}

/// The highest authentic checkpoint `log` stores, and the places holding something
/// that is not one of `key` (a [`ChainKey`], or any of an [`super::AuditKeys`]) — the
/// checkpoints alone, without reading the chain.
///
/// # Errors
/// [`AuditError::Unavailable`] if the log cannot be read.
pub async fn stored_checkpoint(
    log: &dyn AuditLog,
    key: &(impl AsRef<[ChainKey]> + ?Sized),
) -> Result<(Option<Checkpoint>, Vec<String>), AuditError> {
    let mut not_authentic = Vec::new();
    let mut best: Option<Checkpoint> = None;
    for StoredCheckpoint { place, mark } in log.checkpoints().await? {
        match mark.map(Checkpoint::from).filter(|m| m.is_authentic(key)) {
            Some(m) if best.is_none_or(|b| m.seq > b.seq) => best = Some(m),
            Some(_) => {}
            None => not_authentic.push(place),
        }
    }
    Ok((best, not_authentic))
}
