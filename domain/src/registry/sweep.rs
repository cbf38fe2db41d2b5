//! The liveness sweep (safe with several replicas) and self-preservation.

use super::*;

impl Registry {
    /// Whether this replica's last sweep held back a mass expiry (self-preservation).
    pub fn self_preservation(&self) -> bool {
        self.inner.self_preservation.load(Ordering::Relaxed)
    }

    /// One sweep of liveness deadlines; run it on a timer. Cheap when nothing is due
    /// (one indexed lookup). Safe with several replicas on one store: each expiry is
    /// applied by exactly one of them, and its lifecycle event has a deterministic id.
    ///
    /// # Errors
    /// `Unavailable` if the store fails; what was applied before stays applied.
    pub async fn sweep(&self) -> Result<SweepReport, RegistryError> {
        let now = self.now();
        let mut report = SweepReport::default();
        let batch = self.inner.config.sweep_batch.max(1);
        // Events of transitions whose sweep died before publishing them.
        let lease =
            time::Duration::try_from(self.inner.config.outbox_lease).unwrap_or(time::Duration::MAX);
        let orphans = self
            .inner
            .ports
            .store
            .claim_outbox(now.checked_sub(lease).unwrap_or(now), now, batch)
            .await?;
        if !orphans.is_empty() {
            tracing::warn!(
                events = orphans.len(),
                "publishing lifecycle events a sweep left unpublished"
            );
            report.republished = self.flush_outbox(orphans).await?;
        }
        let due = self.inner.ports.store.earliest_deadline().await?;
        if due.is_none_or(|d| d > now) {
            self.leave_self_preservation();
            return Ok(report);
        }
        // "Silent": missed two heartbeats in a row, even if not yet past the ttl.
        // Counting those (not only the due ones) is what recognises a partition:
        // plugins cut off together have deadlines spread over one interval, and a
        // sweep would otherwise expire the first of them before the rest are due.
        let horizon = self
            .inner
            .config
            .heartbeat_ttl
            .saturating_sub(self.inner.config.heartbeat_interval * 2);
        let counts = self
            .inner
            .ports
            .store
            .liveness_counts(now + horizon)
            .await?;
        report.live = counts.live;
        report.silent = counts.due;
        #[allow(clippy::cast_precision_loss)] // plugin counts are far below 2^52
        let share = counts.due as f64 / counts.live.max(1) as f64;
        if counts.due > 0
            && counts.live >= self.inner.config.self_preservation_min_live
            && share > self.inner.config.self_preservation_threshold
        {
            if !self.inner.self_preservation.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    silent = counts.due,
                    live = counts.live,
                    threshold = self.inner.config.self_preservation_threshold,
                    "SELF-PRESERVATION: too many plugins went silent at once; none is expired \
                     until the share of silent plugins falls under the threshold"
                );
            }
            report.self_preservation = true;
            return Ok(report);
        }
        self.leave_self_preservation();
        let deregister_in = self
            .inner
            .config
            .deregister_after
            .map(|d| d.saturating_sub(self.inner.config.heartbeat_ttl));
        loop {
            let swept = self
                .inner
                .ports
                .store
                .sweep(now, deregister_in, batch)
                .await?;
            for step in &swept {
                let id = &step.record.plugin_id;
                for instance in &step.stale {
                    tracing::info!(plugin_id = %id, instance = %instance, "instance stale: no heartbeat within the ttl");
                }
                for instance in &step.removed {
                    tracing::info!(plugin_id = %id, instance = %instance, "instance removed: silent beyond deregister_after");
                }
                match step.event {
                    Some("plugin.stale") => {
                        report.stale += 1;
                        tracing::info!(plugin_id = %id, "plugin stale: no heartbeat within the ttl");
                    }
                    Some("plugin.deregistered") => {
                        report.deregistered += 1;
                        tracing::info!(plugin_id = %id, "plugin deregistered: silent beyond deregister_after");
                    }
                    _ => {}
                }
                report.instances_stale += step.stale.len();
                report.instances_removed += step.removed.len();
            }
            self.flush_outbox(Self::outbox_of(&swept, now)).await?;
            // Until nothing is due: a step can leave its record due again (an instance
            // stale beyond `deregister_after` already is removed by the next step).
            if swept.is_empty() {
                break;
            }
        }
        Ok(report)
    }

    pub(super) fn leave_self_preservation(&self) {
        if self.inner.self_preservation.swap(false, Ordering::Relaxed) {
            tracing::warn!("self-preservation ended: silent plugins are under the threshold again");
        }
    }
}
