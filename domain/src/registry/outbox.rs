//! Lifecycle events, published from the store's outbox: an event is never lost between
//! a committed change and the bus.

use super::*;

impl Registry {
    /// Publishes a lifecycle event. Its id is deterministic — the type, the plugin and
    /// `key` (the token id of the registration it concerns, plus the record version
    /// for transitions that can repeat) — so consumers can drop duplicates.
    pub(super) async fn lifecycle(
        &self,
        event_type: &str,
        id: &PluginId,
        key: &str,
        trace_id: &str,
    ) -> bool {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        let counters = &self.inner.counters;
        match event_type {
            "plugin.registered" => count(&counters.event_registered, || {
                metrics::counter!("vivified_lifecycle_events_total", "event" => "plugin.registered")
            }),
            "plugin.reregistered" => count(&counters.event_reregistered, || {
                metrics::counter!("vivified_lifecycle_events_total", "event" => "plugin.reregistered")
            }),
            _ => metrics::counter!("vivified_lifecycle_events_total", "event" => event_type.to_owned())
                .increment(1),
        }
        if event_type == "plugin.deregistered" {
            // No delivery after deregistration. Best effort: a queue left behind is
            // also ignored by pulls of a later registration of the id.
            if let Err(e) = self.inner.ports.bus.remove_queue(id).await {
                tracing::warn!(plugin_id = %id, error = %e, "event queue of a deregistered plugin not removed");
            }
        }
        if !self.inner.ports.bus.has_subscribers() {
            // Nobody would receive it (an in-process bus without subscribers): not
            // built, as publishing it would have dropped it.
            return true;
        }
        let event = BusEvent {
            event_id: format!("{event_type}:{id}:{key}"),
            event_type: event_type.to_owned(),
            trace_id: trace_id.to_owned(),
            source: "core".to_owned(),
            data_traits: Vec::new(),
            at: self.now(),
            payload: json!({ "plugin_id": id }),
            metadata: std::collections::BTreeMap::new(),
        };
        match self.inner.ports.bus.publish(event).await {
            Ok(()) => true,
            Err(e) => {
                metrics::counter!("vivified_bus_errors_total").increment(1);
                tracing::warn!(plugin_id = %id, event_type, error = %e, "lifecycle event not published");
                false
            }
        }
    }

    /// Publishes the event of a sweeper transition from its outbox entry; true once
    /// the bus has taken it. `plugin.deregistered` has the same id as when an admin
    /// deregisters (a record is deleted once); `plugin.stale` adds the version.
    pub(super) async fn publish_outbox(&self, entry: &OutboxEntry) -> bool {
        let key = if entry.event_type == "plugin.deregistered" {
            entry.registration.clone()
        } else {
            format!("{}:{}", entry.registration, entry.version)
        };
        self.lifecycle(&entry.event_type, &entry.plugin_id, &key, "system")
            .await
    }

    /// Publishes `entries` and acknowledges those the bus took. Whatever is not
    /// acknowledged is claimed again by a later sweep after `outbox_lease`.
    ///
    /// The transition's audit entry is written here too, before the publication: an
    /// entry is acknowledged only once it is both audited and published, so a core that
    /// dies in between leaves it for a later sweep, which audits and publishes it then
    /// (at least once: a retried entry may be audited twice, with the same `version`).
    pub(super) async fn flush_outbox(
        &self,
        entries: Vec<OutboxEntry>,
    ) -> Result<usize, RegistryError> {
        let mut published = Vec::with_capacity(entries.len());
        for entry in entries {
            let (action, reason) = match entry.event_type.as_str() {
                "plugin.stale" => ("plugin.stale", "heartbeat_ttl"),
                "plugin.deregistered" => ("plugin.deregister", "deregister_after"),
                other => (other, "sweep"),
            };
            let audited = self
                .audit(
                    "system",
                    Subject {
                        actor: "system",
                        action,
                        target: entry.plugin_id.as_str(),
                    },
                    AuditOutcome::Success,
                    reason,
                    json!({ "version": entry.version }),
                )
                .await;
            if let Err(e) = audited {
                tracing::error!(plugin_id = %entry.plugin_id, action, error = %e, "transition not audited yet; a later sweep retries");
                continue;
            }
            if self.publish_outbox(&entry).await {
                published.push(entry);
            }
        }
        self.inner.ports.store.ack_outbox(&published).await?;
        Ok(published.len())
    }

    /// The outbox entries the store wrote with these sweep steps.
    pub(super) fn outbox_of(
        swept: &[vivified_ports::Swept],
        at: OffsetDateTime,
    ) -> Vec<OutboxEntry> {
        swept
            .iter()
            .filter_map(|s| OutboxEntry::of(s, at))
            .collect()
    }
}
