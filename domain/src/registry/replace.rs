//! A held id taken over by a new registration: in dev mode from a stale registration,
//! so that a plugin restarted without its token (or one that never heartbeats, as
//! plugins made for the original Python core don't) comes back by itself; in every
//! mode from a registration whose tokens an operator revoked, by whoever holds a
//! registration credential for the id.

use super::*;
use crate::manifest::CheckedManifest;

/// The audit action (and lifecycle event) of a replacement.
const REPLACED: &str = "plugin.replaced";

impl Registry {
    /// Whether a credential-less registration of a held id may replace a stale one.
    pub(super) fn replaces_stale(&self) -> bool {
        self.inner.config.mode == Mode::Dev && self.inner.config.replace_stale
    }

    /// Whether `record` may be replaced at `now`: enabled (an operator's disable
    /// stands), and the tokens of all its instances revoked, or (`stale_too`) every
    /// instance stale, by the sweep or by its deadline having passed (a sweep may not
    /// have run yet, or self-preservation may be holding it back).
    fn is_replaceable(record: &PluginRecord, now: OffsetDateTime, stale_too: bool) -> bool {
        record.enabled
            && (record.token_revoked()
                || stale_too
                    && record.instances.iter().all(|i| {
                        i.status == Liveness::Stale || i.next_deadline.is_some_and(|d| d <= now)
                    }))
    }

    /// Replaces the registration of `valid.id` (its tokens revoked, or stale if
    /// `stale_too`) with a new one: a new token (every earlier one stays revoked with
    /// the old `jti`), a new `registered_at`, liveness `registered`, health unknown.
    /// Conditional on the record read, so that of two replicas (or requests) replacing
    /// at once one wins and the other sees a held id (409). Also returns the record
    /// replaced.
    ///
    /// # Errors
    /// `AlreadyRegistered` if the id is held by a plugin that may not be replaced,
    /// `Unavailable`.
    pub(super) async fn replace_held(
        &self,
        valid: &CheckedManifest,
        instance: &InstanceId,
        stale_too: bool,
        trace_id: &str,
    ) -> Result<(IssuedRegistration, Option<PluginRecord>), RegistryError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(current) = self.inner.ports.store.get(&valid.id).await? else {
                // Freed since the insert failed (deregistered in between): the
                // caller may simply try again.
                return Err(RegistryError::AlreadyRegistered);
            };
            let now = self.now();
            if !Self::is_replaceable(&current, now, stale_too) {
                return Err(RegistryError::AlreadyRegistered);
            }
            let reason = replaced_reason(&current);
            let issued = self.issue(&valid.id, now).await?;
            let record = self.fresh_record(valid, instance, &issued, now, current.version);
            let entry = self.tx_entry(
                trace_id,
                &Subject {
                    actor: &plugin_actor(valid.id.as_str()),
                    action: REPLACED,
                    target: valid.id.as_str(),
                },
                reason,
                || replaced_details(&current, now, issued.expires_at),
            );
            match self
                .store_replace(record, current.version, entry.as_ref())
                .await
            {
                Ok(stored) => {
                    let mut reg = self.issued(issued, instance, stored, false, entry.is_some());
                    reg.replaced = Some(current.registered_at);
                    return Ok((reg, Some(current)));
                }
                // Another write came first (a heartbeat, a sweep, another
                // replacement): look again.
                Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                Err(e) => return Err(RegistryError::store(e)),
            }
        }
        Err(too_contended())
    }

    /// What follows a stored replacement: its audit entry (if the store did not write
    /// it with the record; failing closed: the replacement is undone if it cannot be
    /// audited), one warning line and the `plugin.replaced` lifecycle event.
    ///
    /// # Errors
    /// `Unavailable` if the audit entry cannot be appended.
    pub(super) async fn replaced(
        &self,
        reg: &IssuedRegistration,
        previous: Option<&PluginRecord>,
        trace_id: &str,
    ) -> Result<(), RegistryError> {
        let id = reg.plugin_id.as_str();
        if !reg.audited {
            let details = previous.map_or(Value::Null, |p| {
                replaced_details(p, reg.record.registered_at, reg.expires_at)
            });
            let audited = self
                .audit(
                    trace_id,
                    Subject {
                        actor: &plugin_actor(id),
                        action: REPLACED,
                        target: id,
                    },
                    AuditOutcome::Success,
                    previous.map_or("stale_registration_replaced", replaced_reason),
                    details,
                )
                .await;
            if let Err(e) = audited {
                self.undo(&reg.record, previous.cloned()).await;
                return Err(e);
            }
        }
        tracing::warn!(
            plugin_id = %reg.plugin_id,
            reason = previous.map_or("stale_registration_replaced", replaced_reason),
            "registration replaced by a new one without its token; its earlier tokens stay revoked"
        );
        self.lifecycle(REPLACED, &reg.plugin_id, &reg.token_jti, trace_id)
            .await;
        Ok(())
    }
}

/// The audit reason of replacing `previous`.
fn replaced_reason(previous: &PluginRecord) -> &'static str {
    if previous.token_revoked() {
        "revoked_registration_replaced"
    } else {
        "stale_registration_replaced"
    }
}

/// The audit details of a replacement: when the old and the new registration were
/// made, and when the new token expires (Unix seconds, as elsewhere).
fn replaced_details(
    previous: &PluginRecord,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Value {
    json!({
        "previous_registered_at": previous.registered_at.unix_timestamp(),
        "registered_at": now.unix_timestamp(),
        "token_expires_at": expires_at.unix_timestamp(),
    })
}
