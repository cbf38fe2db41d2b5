//! Approval of sensitive traits: in production, a plugin that newly declares
//! `handles_phi` or `external_service` waits for an operator before it publishes,
//! pulls, introspects or receives anything; it may heartbeat, refresh, re-register and
//! read its record meanwhile. Dev mode approves at once, and logs that it did.

use vivified_ports::sensitive_traits_of;

use super::*;

impl Registry {
    /// The approved traits of a new registration of `manifest`: none in production,
    /// every declared one in dev mode.
    pub(super) fn initial_approval(&self, manifest: &Value) -> Option<Vec<String>> {
        let declared = sensitive_traits_of(manifest);
        if self.inner.config.mode == Mode::Dev {
            self.note_auto_approval(manifest, &declared);
            Some(declared)
        } else {
            Some(Vec::new())
        }
    }

    /// The approved traits after `current` re-registers with `manifest`: what was
    /// approved stays approved (a record from before approval keeps what its manifest
    /// declared then); dev mode adds whatever is newly declared.
    pub(super) fn approval_after(
        &self,
        current: &PluginRecord,
        manifest: &Value,
    ) -> Option<Vec<String>> {
        let mut approved = current
            .approved_traits
            .clone()
            .unwrap_or_else(|| current.sensitive_traits());
        if self.inner.config.mode == Mode::Dev {
            let declared = sensitive_traits_of(manifest);
            let new: Vec<String> = declared
                .into_iter()
                .filter(|t| !approved.contains(t))
                .collect();
            self.note_auto_approval(manifest, &new);
            approved.extend(new);
        }
        Some(approved)
    }

    fn note_auto_approval(&self, manifest: &Value, traits: &[String]) {
        if !traits.is_empty() {
            let id = manifest.get("id").and_then(Value::as_str).unwrap_or("-");
            tracing::info!(
                plugin_id = id,
                traits = ?traits,
                "sensitive traits approved automatically (dev mode; production waits for an operator)"
            );
        }
    }

    /// Approves the sensitive traits plugin `id` declares (admin): it may then publish,
    /// pull, introspect and receive events. Audited (`plugin.approve`, actor `admin`,
    /// with the traits) and announced (`plugin.approved`). Idempotent: nothing
    /// pending answers the record unchanged.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound`, `Unavailable`.
    pub async fn approve(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        let principal = self.authorize(bearer, Operation::ApproveTraits).await?;
        let actor = principal.actor();
        let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
        for _ in 0..CAS_ATTEMPTS {
            let current = self.existing(&id).await?;
            let pending = current.pending_traits();
            if pending.is_empty() {
                return Ok(current);
            }
            let mut next = current.clone();
            let mut approved = current.approved_traits.clone().unwrap_or_default();
            approved.extend(pending.iter().cloned());
            next.approved_traits = Some(approved);
            let subject = Subject {
                actor: &actor,
                action: "plugin.approve",
                target: id.as_str(),
            };
            let details = || principal.stamp(json!({ "traits": pending }));
            match self
                .replace_and_audit(
                    next,
                    &current,
                    Change {
                        trace_id,
                        subject,
                        reason: "approved",
                        details,
                    },
                    true,
                )
                .await
            {
                Ok(stored) => {
                    tracing::info!(plugin_id = %id, traits = ?pending, "sensitive traits approved");
                    let key = format!("{}:{}", stored.registration_key(), stored.version);
                    self.lifecycle("plugin.approved", &id, &key, trace_id).await;
                    return Ok(stored);
                }
                Err(e) => e.or_retry()?,
            }
        }
        Err(too_contended())
    }

    /// Refuses the sensitive traits plugin `id` waits to have approved (admin): the
    /// plugin is disabled with `approval refused: {reason}` as its reason, and stays
    /// unapproved — enabled again, it still waits for approval; re-registered without
    /// those traits, it waits for nothing. Audited (`plugin.approval_refused`, actor
    /// `admin`, with the traits and the reason) and announced (`plugin.disabled`).
    /// Idempotent for the same reason.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound`, `Conflict("nothing_pending")` (nothing
    /// waits for approval), `Unavailable`.
    pub async fn refuse_approval(
        &self,
        id: &str,
        bearer: Option<&str>,
        reason: &str,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        let principal = self.authorize(bearer, Operation::ManagePlugins).await?;
        let actor = principal.actor();
        let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
        let disabled_reason = format!("approval refused: {reason}");
        for _ in 0..CAS_ATTEMPTS {
            let current = self.existing(&id).await?;
            let pending = current.pending_traits();
            if pending.is_empty() {
                return Err(RegistryError::Conflict("nothing_pending"));
            }
            if !current.enabled && current.disabled_reason.as_deref() == Some(&disabled_reason) {
                return Ok(current);
            }
            let was_enabled = current.enabled;
            let mut next = current.clone();
            next.enabled = false;
            next.disabled_reason = Some(disabled_reason.clone());
            self.reset_deadlines(&mut next, self.now());
            let subject = Subject {
                actor: &actor,
                action: "plugin.approval_refused",
                target: id.as_str(),
            };
            let details = || principal.stamp(json!({ "traits": pending, "reason": reason }));
            match self
                .replace_and_audit(
                    next,
                    &current,
                    Change {
                        trace_id,
                        subject,
                        reason: "refused",
                        details,
                    },
                    true,
                )
                .await
            {
                Ok(stored) => {
                    tracing::info!(plugin_id = %id, traits = ?pending, "sensitive traits refused; plugin disabled");
                    if was_enabled {
                        let key = format!("{}:{}", stored.registration_key(), stored.version);
                        self.lifecycle("plugin.disabled", &id, &key, trace_id).await;
                    }
                    return Ok(stored);
                }
                Err(e) => e.or_retry()?,
            }
        }
        Err(too_contended())
    }
}
