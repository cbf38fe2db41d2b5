//! The audit chain in the server: the log (which follows the store, see
//! `startup::open_backends`) and its key, the sealer task that runs next to the
//! liveness sweeper, checkpoints written to the structured log, and the core's own
//! `core.start` / `core.stop` entries.
//!
//! Appends (by the registry) only store pending entries; the sealer gives them their
//! sequence numbers and chain hashes in batches ([`AuditLog::seal`]). Several replicas
//! on one Postgres database each run a sealer; the one holding the advisory lock is
//! the chainer, the others find it `busy` and wait for their next tick.
//!
//! A checkpoint (`SEQ:HASH:MAC`, [`Checkpoint`]) is one INFO line with the field
//! `audit_checkpoint`, every `VIVIFIED_AUDIT_CHECKPOINT_EVERY` entries and at shutdown.
//! It holds no secret: its MAC can only be made, and checked, with the key. Given back
//! to `GET /audit/verify?checkpoint=…` it detects entries cut from the chain's end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use vivified_domain::audit_chain::{
    AuditKeys, ChainHead, Checkpoint, FailureReason, check_stored_checkpoints,
};
use vivified_ports::{AuditEntry, AuditError, AuditLog, AuditOutcome};

/// Entries sealed per `seal` call: one transaction each, holding SQLite's one writer
/// (so a group of registrations may wait for it) for a few milliseconds at most.
pub const SEAL_BATCH: usize = 250;

/// How long the last seal at shutdown may wait for another replica's sealer.
const FINAL_SEAL_BUDGET: Duration = Duration::from_secs(3);

/// The audit log and the key that chains it: what the sealer, the `/audit` routes and
/// `/ready` use. Cheap to clone.
#[derive(Clone)]
pub struct AuditChain {
    /// The log (the same one the registry appends to).
    pub log: Arc<dyn AuditLog>,
    /// The chain's HMAC keys: the current one (`VIVIFIED_AUDIT_KEY`), which seals,
    /// and older ones (`VIVIFIED_AUDIT_PREVIOUS_KEYS`). Never logged. Shared: the chain
    /// is part of the state every request clones, and a key's HMAC state is not small.
    pub keys: Arc<AuditKeys>,
    /// Where checkpoints are published besides the log (the event bus: on NATS the
    /// subject `vivified.lifecycle.audit.checkpoint`).
    checkpoints: Option<Arc<dyn vivified_ports::EventBus>>,
}

impl std::fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditChain")
            .field("key_fingerprint", &self.keys.current().fingerprint())
            .finish_non_exhaustive()
    }
}

impl AuditChain {
    /// Wraps a log and its keys (a [`vivified_domain::audit_chain::ChainKey`], or an
    /// [`AuditKeys`] with older keys).
    pub fn new(log: Arc<dyn AuditLog>, keys: impl Into<AuditKeys>) -> Self {
        Self {
            log,
            keys: Arc::new(keys.into()),
            checkpoints: None,
        }
    }

    /// Also publishes every checkpoint on `bus` as an `audit.checkpoint` event (a copy
    /// outside the database, next to the log line).
    #[must_use]
    pub fn with_checkpoint_bus(mut self, bus: Arc<dyn vivified_ports::EventBus>) -> Self {
        self.checkpoints = Some(bus);
        self
    }

    /// Appends an entry of the core itself (actor `system`, trace id `system`, target
    /// `core`), e.g. `core.start` with reason `startup`.
    ///
    /// # Errors
    /// The log's error.
    pub async fn record_system(
        &self,
        action: &str,
        reason: &str,
        details: Value,
    ) -> Result<(), AuditError> {
        self.log
            .append(AuditEntry {
                at: OffsetDateTime::now_utc(),
                actor: "system".into(),
                action: action.into(),
                target: "core".into(),
                outcome: AuditOutcome::Success,
                reason: reason.into(),
                trace_id: "system".into(),
                details,
            })
            .await
    }

    /// Seals until nothing is pending (a batch short of [`SEAL_BATCH`]) or `budget` has
    /// passed, waiting out another sealer that holds the chain. Returns the last head
    /// seen. For tests and the shutdown seal.
    ///
    /// # Errors
    /// The log's error.
    pub async fn seal_all(&self, budget: Duration) -> Result<Option<ChainHead>, AuditError> {
        let deadline = Instant::now() + budget;
        let mut head = None;
        loop {
            let report = self.log.seal(&*self.keys, SEAL_BATCH).await?;
            head = report.head.or(head);
            let again = if report.busy {
                tokio::time::sleep(Duration::from_millis(20)).await;
                true
            } else {
                report.sealed >= SEAL_BATCH as u64
            };
            if !again || Instant::now() >= deadline {
                return Ok(head);
            }
        }
    }
}

/// The `core.start` entry's details: nothing secret (the keys' public fingerprints).
pub fn start_details(
    settings: &crate::Settings,
    keys: &AuditKeys,
    addr: std::net::SocketAddr,
) -> Value {
    let store = match settings.store {
        crate::settings::StoreSetting::Memory => "memory",
        crate::settings::StoreSetting::Sqlite(_) => "sqlite",
        crate::settings::StoreSetting::Postgres(_) => "postgres",
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "mode": match settings.mode {
            vivified_domain::Mode::Dev => "dev",
            vivified_domain::Mode::Production => "production",
        },
        "store": store,
        "addr": addr.to_string(),
        "audit_key_fingerprint": keys.current().fingerprint(),
        "audit_previous_key_fingerprints": keys
            .previous()
            .iter()
            .map(vivified_domain::audit_chain::ChainKey::fingerprint)
            .collect::<Vec<_>>(),
    })
}

/// Checks the chain against the checkpoint its log stored with its last seal (see
/// `vivified_domain::audit_chain::check_stored_checkpoints`), at start-up: one ERROR
/// line naming the problem when the chain is broken (its end cut off, or the entry
/// there replaced), one WARN line per place holding something that is not a
/// checkpoint of this key. Returns whether the chain is broken.
pub async fn check_at_start(chain: &AuditChain) -> bool {
    let check = match check_stored_checkpoints(&*chain.log, &*chain.keys).await {
        Ok(check) => check,
        Err(e) => {
            tracing::warn!(error = %e, "the audit chain could not be checked against its stored checkpoint");
            return false;
        }
    };
    for place in &check.not_authentic {
        tracing::warn!(%place, "a stored audit checkpoint is not one of this core's audit keys; it is ignored");
    }
    let (Some(failure), Some(cp)) = (check.failure, check.checkpoint) else {
        return false;
    };
    let problem = match failure.reason {
        FailureReason::ChainTruncated => {
            "the audit chain ends before the checkpoint stored with its last seal: entries were cut from its end; nothing more is sealed until they are restored"
        }
        _ => "the audit chain differs from the checkpoint stored with its last seal",
    };
    tracing::error!(
        first_bad_seq = failure.seq,
        reason = failure.reason.as_str(),
        checkpoint_seq = cp.seq,
        "{problem}"
    );
    true
}

/// How the sealer runs.
#[derive(Clone, Copy, Debug)]
pub struct SealerConfig {
    /// Sleep after a seal that found less than a full batch (or found the log busy).
    pub interval: Duration,
    /// Write a checkpoint whenever the head has moved this many entries past the last.
    pub checkpoint_every: u64,
    /// [`check_at_start`] found the chain broken and said so: a seal refused for
    /// the same reason is not logged again.
    pub broken_at_start: bool,
}

/// Writes `head`'s checkpoint to the structured log (one INFO line) and, when the
/// chain has a checkpoint bus, publishes it there as an `audit.checkpoint` event.
async fn log_checkpoint(chain: &AuditChain, head: ChainHead, at: &'static str) {
    let checkpoint = Checkpoint::new(chain.keys.current(), head);
    tracing::info!(
        audit_checkpoint = %checkpoint,
        seq = head.seq,
        at,
        "audit checkpoint"
    );
    if let Some(bus) = &chain.checkpoints {
        let event = vivified_ports::BusEvent {
            event_id: format!("audit.checkpoint:{}", head.seq),
            event_type: "audit.checkpoint".to_owned(),
            trace_id: "system".to_owned(),
            source: "core".to_owned(),
            data_traits: Vec::new(),
            at: time::OffsetDateTime::now_utc(),
            payload: serde_json::json!({
                "checkpoint": checkpoint.to_string(),
                "seq": head.seq,
                "at": at,
            }),
            metadata: std::collections::BTreeMap::new(),
        };
        if let Err(e) = bus.publish(event).await {
            tracing::warn!(error = %e, seq = head.seq, "audit checkpoint not published on the bus (it is in the log)");
        }
    }
}

/// Counts a failed seal in `vivified_audit_seal_failures_total`, by reason.
fn seal_failed(e: &AuditError) {
    let reason = match e {
        AuditError::UnknownKey { .. } => "unknown_key",
        AuditError::BehindCheckpoint { .. } => "behind_checkpoint",
        AuditError::Unavailable(_)
        | AuditError::InvalidEntry(_)
        | AuditError::CorruptEntry { .. } => "unavailable",
    };
    metrics::counter!("vivified_audit_seal_failures_total", "reason" => reason).increment(1);
}

/// How often a sealer that does not hold the key in force says so again.
const UNKNOWN_KEY_ALARM_EVERY: Duration = Duration::from_secs(60);

struct Sealer {
    chain: AuditChain,
    config: SealerConfig,
    last_checkpoint: u64,
    failing: bool,
    /// When [`AuditError::UnknownKey`] was last logged.
    last_alarm: Option<Instant>,
}

impl Sealer {
    /// One seal. Returns whether to seal again at once (a full batch was sealed).
    async fn step(&mut self) -> bool {
        match self.chain.log.seal(&*self.chain.keys, SEAL_BATCH).await {
            Ok(report) => {
                if self.failing {
                    tracing::info!("audit sealing works again");
                    self.failing = false;
                    self.last_alarm = None;
                }
                if let Some(head) = report.head
                    && head.seq
                        >= self
                            .last_checkpoint
                            .saturating_add(self.config.checkpoint_every)
                {
                    log_checkpoint(&self.chain, head, "interval").await;
                    self.last_checkpoint = head.seq;
                }
                !report.busy && report.sealed >= SEAL_BATCH as u64
            }
            Err(e @ AuditError::UnknownKey { .. }) => {
                seal_failed(&e);
                // A configuration error that only an operator can fix: said at once,
                // and again every minute while it lasts.
                if self
                    .last_alarm
                    .is_none_or(|at| at.elapsed() >= UNKNOWN_KEY_ALARM_EVERY)
                {
                    tracing::error!(error = %e, "audit sealing refused: this core does not hold the key in force");
                    self.last_alarm = Some(Instant::now());
                }
                self.failing = true;
                false
            }
            Err(e) => {
                seal_failed(&e);
                if !self.failing {
                    tracing::warn!(error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "audit sealing failed; retrying every interval");
                    self.failing = true;
                }
                false
            }
        }
    }

    /// The last seal and a checkpoint of where the chain ends.
    async fn finish(&mut self) {
        match self.chain.seal_all(FINAL_SEAL_BUDGET).await {
            Ok(Some(head)) => log_checkpoint(&self.chain, head, "shutdown").await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "audit sealing at shutdown failed; pending entries stay for the next sealer");
            }
        }
    }
}

/// Seals pending entries until `stop` turns true: again at once after a full batch,
/// else after `config.interval`. Then seals once more and writes the shutdown
/// checkpoint. A seal in progress is never interrupted. A failing log is logged once
/// per outage.
pub async fn seal_until_stopped(
    chain: AuditChain,
    config: SealerConfig,
    mut stop: watch::Receiver<bool>,
) {
    // Checkpoints count from where the chain stood at start-up.
    let start = chain.log.head().await.ok().flatten().map_or(0, |h| h.seq);
    let mut sealer = Sealer {
        chain,
        config: SealerConfig {
            checkpoint_every: config.checkpoint_every.max(1),
            ..config
        },
        last_checkpoint: start,
        failing: config.broken_at_start,
        last_alarm: None,
    };
    while !*stop.borrow() {
        if sealer.step().await {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(sealer.config.interval) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    sealer.finish().await;
}
