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
            Caller::Admin => {
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
            Caller::Admin => Ok(self.inner.ports.store.list(after, limit).await?),
            Caller::Plugin(claims) => Err(self.refuse_plugin_on_admin_route(&claims).await),
        }
    }

    /// Deregisters plugin `id` (admin, or the plugin with its current token). Its token
    /// stops working and its id is free.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound` (admin only), `Unavailable`.
    pub async fn deregister(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<(), RegistryError> {
        let (actor, mut record) = match self.authenticate(bearer).await? {
            Caller::Admin => {
                let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
                let record = self.existing(&id).await?;
                ("admin".to_owned(), record)
            }
            Caller::Plugin(_) => {
                let (claims, record) = self.authorize_plugin(id, bearer).await?;
                (claims.plugin_id.to_string(), record)
            }
        };
        let admin = actor == "admin";
        // Delete exactly the record read (by its token id), so that the audit entry and
        // a possible undo describe what was really removed.
        let mut attempts = 0;
        let in_tx;
        loop {
            let entry = self.tx_entry(
                trace_id,
                &Subject {
                    actor: &actor,
                    action: "plugin.deregister",
                    target: record.plugin_id.as_str(),
                },
                "deregistered",
                || Value::Null,
            );
            match self
                .store_delete(
                    &record.plugin_id,
                    Some(record.token_jti.clone()),
                    entry.as_ref(),
                )
                .await
            {
                Ok(()) => {
                    in_tx = entry.is_some();
                    break;
                }
                Err(StoreError::NotFound) if admin => return Err(RegistryError::NotFound),
                Err(StoreError::NotFound) => {
                    return Err(RegistryError::Unauthorized("unknown_plugin"));
                }
                Err(StoreError::PreconditionFailed) if admin && attempts < CAS_ATTEMPTS => {
                    attempts += 1;
                    record = self.existing(&record.plugin_id).await?;
                }
                Err(StoreError::PreconditionFailed) if admin => {
                    return Err(too_contended());
                }
                Err(StoreError::PreconditionFailed) => {
                    return Err(RegistryError::Unauthorized("revoked_token"));
                }
                Err(e) => return Err(RegistryError::store(e)),
            }
        }
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
                Value::Null,
            )
            .await
        };
        if let Err(e) = audited {
            // Fail closed: put the plugin back as it was (its token works again).
            if let Err(undo) = self.inner.ports.store.insert(record.clone()).await {
                tracing::error!(plugin_id = %record.plugin_id, error = %undo, "could not undo an unaudited deregistration");
            }
            return Err(e);
        }
        tracing::info!(plugin_id = %record.plugin_id, "plugin deregistered");
        self.lifecycle(
            "plugin.deregistered",
            &record.plugin_id,
            &record.token_jti,
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
        let key = format!("{}:{}", record.token_jti, record.version);
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
        self.require_admin(bearer).await?;
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
            next.next_deadline = self.deadline_for(&next, self.now());
            let subject = Subject {
                actor: "admin",
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
                        details: || Value::Null,
                    },
                    true,
                )
                .await
            {
                Ok(stored) => {
                    if changed {
                        tracing::info!(plugin_id = %id, event, "plugin {}", if enable { "enabled" } else { "disabled" });
                        let key = format!("{}:{}", stored.token_jti, stored.version);
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
