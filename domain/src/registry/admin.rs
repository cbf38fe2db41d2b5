//! Reads and operator actions: get, list, deregister, disable, enable.

use super::*;

impl Registry {
    /// Plugin `id`'s record, for an operator: `NotFound` if there is none.
    pub(super) async fn existing(&self, id: &PluginId) -> Result<PluginRecord, RegistryError> {
        self.inner
            .ports
            .store
            .get(id)
            .await?
            .ok_or(RegistryError::NotFound)
    }

    /// Returns plugin `id`'s record to the admin or to the plugin itself.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound` (admin only), `Unavailable`.
    pub async fn get(&self, id: &str, bearer: Option<&str>) -> Result<PluginRecord, RegistryError> {
        match self.authenticate(bearer).await? {
            Caller::Operator(p) => {
                p.require(Operation::ReadPlugins)?;
                let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
                self.existing(&id).await
            }
            Caller::Plugin(_) => self.authorize_plugin(id, bearer).await.map(|(_, r)| r),
        }
    }

    /// Lists records sorted by id, `limit` at most, after `after` (admin only).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden` (a plugin token), `Unavailable`.
    pub async fn list(
        &self,
        bearer: Option<&str>,
        after: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<PluginRecord>, RegistryError> {
        match self.authenticate(bearer).await? {
            Caller::Operator(p) => {
                p.require(Operation::ReadPlugins)?;
                Ok(self.inner.ports.store.list(after, limit).await?)
            }
            Caller::Plugin(claims) => Err(self.refuse_plugin_on_admin_route(&claims).await),
        }
    }

    /// Deregisters plugin `id` (admin), or the calling instance (the plugin with its
    /// current token; the plugin goes with its last instance). The tokens of what was
    /// removed stop working; a plugin removed frees its id.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound` (admin only), `Unavailable`.
    pub async fn deregister(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<(), RegistryError> {
        let (actor, principal, mut record, own_jti) = match self.authenticate(bearer).await? {
            Caller::Operator(p) => {
                p.require(Operation::ManagePlugins)?;
                let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
                let record = self.existing(&id).await?;
                (p.actor(), Some(p), record, None)
            }
            Caller::Plugin(_) => {
                let (claims, record) = self.authorize_plugin(id, bearer).await?;
                (
                    plugin_actor(claims.plugin_id.as_str()),
                    None,
                    record,
                    Some(claims.jti),
                )
            }
        };
        let admin = own_jti.is_none();
        // Remove exactly what was read (conditional on its version), so that the audit
        // entry and a possible undo describe what was really removed.
        let mut attempts = 0;
        let (in_tx, instance, kept) = loop {
            let instance = match &own_jti {
                Some(jti) => Some(
                    record
                        .instance_by_jti(jti)
                        .ok_or(RegistryError::Unauthorized("revoked_token"))?
                        .instance_id
                        .clone(),
                ),
                None => None,
            };
            let remaining = instance.as_ref().and_then(|i| {
                let mut next = record.clone();
                next.remove_instance(i);
                (!next.instances.is_empty()).then_some(next)
            });
            let entry = self.tx_entry(
                trace_id,
                &Subject {
                    actor: &actor,
                    action: "plugin.deregister",
                    target: record.plugin_id.as_str(),
                },
                "deregistered",
                || deregister_details(principal.as_ref(), instance.as_ref(), remaining.is_none()),
            );
            let written = match remaining {
                Some(next) => self
                    .store_replace(next, record.version, entry.as_ref())
                    .await
                    .map(Some),
                None => self
                    .store_delete(&record.plugin_id, Some(record.version), entry.as_ref())
                    .await
                    .map(|()| None),
            };
            match written {
                Ok(kept) => break (entry.is_some(), instance, kept),
                Err(StoreError::NotFound) if admin => return Err(RegistryError::NotFound),
                Err(StoreError::NotFound) => {
                    return Err(RegistryError::Unauthorized("unknown_plugin"));
                }
                Err(StoreError::PreconditionFailed) if attempts < CAS_ATTEMPTS => {
                    attempts += 1;
                    record = match self.inner.ports.store.get(&record.plugin_id).await? {
                        Some(r) => r,
                        None if admin => return Err(RegistryError::NotFound),
                        None => return Err(RegistryError::Unauthorized("unknown_plugin")),
                    };
                }
                Err(StoreError::PreconditionFailed) => return Err(too_contended()),
                Err(e) => return Err(RegistryError::store(e)),
            }
        };
        let audited = if in_tx {
            Ok(())
        } else {
            self.audit(
                trace_id,
                Subject {
                    actor: &actor,
                    action: "plugin.deregister",
                    target: record.plugin_id.as_str(),
                },
                AuditOutcome::Success,
                "deregistered",
                deregister_details(principal.as_ref(), instance.as_ref(), kept.is_none()),
            )
            .await
        };
        if let Err(e) = audited {
            // Fail closed: put back what was removed (its token works again).
            let undone = match &kept {
                Some(stored) => self
                    .inner
                    .ports
                    .store
                    .replace(record.clone(), stored.version)
                    .await
                    .map(drop),
                None => self
                    .inner
                    .ports
                    .store
                    .insert(record.clone())
                    .await
                    .map(drop),
            };
            if let Err(undo) = undone {
                tracing::error!(plugin_id = %record.plugin_id, error = %undo, "could not undo an unaudited deregistration");
            }
            return Err(e);
        }
        if kept.is_some() {
            tracing::info!(plugin_id = %record.plugin_id, instance = ?instance, "instance deregistered");
            return Ok(());
        }
        tracing::info!(plugin_id = %record.plugin_id, "plugin deregistered");
        self.lifecycle(
            "plugin.deregistered",
            &record.plugin_id,
            &record.registration_key(),
            trace_id,
        )
        .await;
        Ok(())
    }

    /// Publishes and audits the end of a stale spell.
    pub(super) async fn recovered(&self, record: &PluginRecord, trace_id: &str) {
        tracing::info!(plugin_id = %record.plugin_id, "plugin recovered");
        self.audit_system(trace_id, "plugin.recovered", &record.plugin_id, "heartbeat")
            .await;
        let key = format!("{}:{}", record.registration_key(), record.version);
        self.lifecycle("plugin.recovered", &record.plugin_id, &key, trace_id)
            .await;
    }

    /// Audits a transition the core made by itself. It has already happened, so a
    /// failed append cannot refuse it: it is logged as an error instead.
    pub(super) async fn audit_system(
        &self,
        trace_id: &str,
        action: &str,
        id: &PluginId,
        reason: &str,
    ) {
        let entry = self
            .audit(
                trace_id,
                Subject {
                    actor: "system",
                    action,
                    target: id.as_str(),
                },
                AuditOutcome::Success,
                reason,
                Value::Null,
            )
            .await;
        if let Err(e) = entry {
            tracing::error!(plugin_id = %id, action, error = %e, "transition not audited");
        }
    }

    /// Disables plugin `id` (admin): its token keeps verifying, but heartbeats,
    /// refreshes, publishing and pulling answer 403 `plugin_disabled`, it receives no
    /// events, and the sweeper leaves it alone. Idempotent; a new `reason` replaces
    /// the old one.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound`, `Unavailable`.
    pub async fn disable(
        &self,
        id: &str,
        bearer: Option<&str>,
        reason: &str,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        self.set_enabled(id, bearer, Some(reason), trace_id).await
    }

    /// Enables plugin `id` again (admin). Its deadline starts afresh from now.
    /// Idempotent.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound`, `Unavailable`.
    pub async fn enable(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        self.set_enabled(id, bearer, None, trace_id).await
    }

    pub(super) async fn set_enabled(
        &self,
        id: &str,
        bearer: Option<&str>,
        disable_reason: Option<&str>,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        let principal = self.authorize(bearer, Operation::ManagePlugins).await?;
        let actor = principal.actor();
        let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
        let enable = disable_reason.is_none();
        let (action, event) = if enable {
            ("plugin.enable", "plugin.enabled")
        } else {
            ("plugin.disable", "plugin.disabled")
        };
        for _ in 0..CAS_ATTEMPTS {
            let current = self.existing(&id).await?;
            let reason = disable_reason.map(str::to_owned);
            if current.enabled == enable && current.disabled_reason == reason {
                return Ok(current);
            }
            let changed = current.enabled != enable;
            let mut next = current.clone();
            next.enabled = enable;
            next.disabled_reason = reason;
            self.reset_deadlines(&mut next, self.now());
            let subject = Subject {
                actor: &actor,
                action,
                target: id.as_str(),
            };
            let reason_code = if changed { action } else { "reason_changed" };
            match self
                .replace_and_audit(
                    next,
                    &current,
                    Change {
                        trace_id,
                        subject,
                        reason: reason_code,
                        details: || principal.stamp(Value::Null),
                    },
                    true,
                )
                .await
            {
                Ok(stored) => {
                    if changed {
                        tracing::info!(plugin_id = %id, event, "plugin {}", if enable { "enabled" } else { "disabled" });
                        let key = format!("{}:{}", stored.registration_key(), stored.version);
                        self.lifecycle(event, &id, &key, trace_id).await;
                    }
                    return Ok(stored);
                }
                Err(e) => e.or_retry()?,
            }
        }
        Err(too_contended())
    }
}

/// The audit details of a deregistration: the instance that asked (none: an operator)
/// and whether the plugin went with it.
/// An operator's deregistration says how the operator authenticated.
fn deregister_details(
    by: Option<&Principal>,
    instance: Option<&InstanceId>,
    plugin_removed: bool,
) -> Value {
    let details = json!({ "instance": instance, "plugin_removed": plugin_removed });
    match by {
        Some(p) => p.stamp(details),
        None => details,
    }
}
