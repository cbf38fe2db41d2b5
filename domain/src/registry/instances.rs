//! Instances of one plugin: which instance a registration is for, what admits a new
//! one, and the limit on how many a plugin may have.
//!
//! The rule, for every credential: a registration names an instance (`default` if it
//! names none; a plugin token without a name means its own instance). The instance a
//! token belongs to is re-registered by that token; a new instance of a registered
//! plugin is admitted with the current token of any of its instances or with an
//! enrollment token for the plugin, never with the registration secret or no
//! credential (those only register new ids). The manifest is the plugin's: every
//! registration, of any instance, replaces it (a re-registration of the plugin).

use super::*;
use crate::manifest::CheckedManifest;

impl Registry {
    /// The deadline an instance of a plugin (`enabled` or not) should carry from `now`,
    /// when it last showed life, in `status`.
    pub(super) fn deadline_for(
        &self,
        enabled: bool,
        status: Liveness,
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        if !enabled {
            return None;
        }
        match status {
            Liveness::Registered | Liveness::Active => Some(now + self.inner.config.heartbeat_ttl),
            Liveness::Stale => self.inner.config.deregister_after.map(|d| now + d),
        }
    }

    /// Gives every instance of `record` its deadline from `now` (after an operator
    /// enabled or disabled the plugin).
    pub(super) fn reset_deadlines(&self, record: &mut PluginRecord, now: OffsetDateTime) {
        let enabled = record.enabled;
        for i in &mut record.instances {
            i.next_deadline = self.deadline_for(enabled, i.status, now);
        }
        record.settle();
    }

    /// `current` registered again with `valid` for instance `target`, which gets token
    /// `jti` issued `now`: the manifest replaced (newly declared sensitive traits
    /// waiting for approval), and `target` re-registered (a new token; a stale instance
    /// is `registered` again, with a fresh deadline) or, if the plugin has no such
    /// instance, added.
    ///
    /// # Errors
    /// `Conflict("too_many_instances")` if a new instance finds the plugin at
    /// `max_instances` with no stale instance to take the place of.
    pub(super) fn with_instance(
        &self,
        current: &PluginRecord,
        valid: &CheckedManifest,
        target: &InstanceId,
        jti: &str,
        now: OffsetDateTime,
    ) -> Result<PluginRecord, RegistryError> {
        let mut next = current.clone();
        next.manifest = StoredManifest::from_value(&valid.raw);
        next.approved_traits = self.approval_after(current, &valid.raw);
        let instance = match current.instance(target) {
            Some(existing) => {
                let mut i = existing.clone();
                i.token_jti = jti.to_owned();
                i.token_issued_at = Some(now);
                // A re-registration is a sign of life.
                if i.status == Liveness::Stale {
                    i.status = Liveness::Registered;
                }
                i.next_deadline = self.deadline_for(next.enabled, i.status, now);
                i
            }
            None => {
                self.make_room(&mut next)?;
                InstanceRecord::new(
                    target.clone(),
                    jti.to_owned(),
                    now,
                    self.deadline_for(next.enabled, Liveness::Registered, now),
                )
            }
        };
        next.put_instance(instance);
        Ok(next)
    }

    /// Removes stale instances of `record` (the longest silent first) until it has room
    /// for one more.
    fn make_room(&self, record: &mut PluginRecord) -> Result<(), RegistryError> {
        let max = self.inner.config.max_instances.max(1);
        while record.instances.len() >= max {
            let oldest_stale = record
                .instances
                .iter()
                .filter(|i| i.status == Liveness::Stale)
                .min_by_key(|i| (i.last_heartbeat.unwrap_or(i.registered_at), i.registered_at))
                .map(|i| i.instance_id.clone());
            let Some(id) = oldest_stale else {
                return Err(RegistryError::Conflict("too_many_instances"));
            };
            record.remove_instance(&id);
        }
        Ok(())
    }

    /// An enrollment token presented for instance `target` of a registered, enabled
    /// plugin: admits it as a new instance, or re-registers it if its token was
    /// revoked. An instance that holds a valid token is its holder's (409).
    pub(super) async fn admit_enrolled(
        &self,
        valid: &CheckedManifest,
        target: &InstanceId,
        trace_id: &str,
    ) -> Result<(IssuedRegistration, Option<PluginRecord>), RegistryError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(current) = self.inner.ports.store.get(&valid.id).await? else {
                return Err(RegistryError::AlreadyRegistered);
            };
            let existing = current.instance(target);
            if !current.enabled || existing.is_some_and(|i| !i.token_revoked()) {
                return Err(RegistryError::AlreadyRegistered);
            }
            match self.register_in(&current, valid, target, trace_id).await? {
                Ok(reg) => return Ok((reg, Some(current))),
                Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                Err(e) => return Err(RegistryError::store(e)),
            }
        }
        Err(too_contended())
    }

    /// Registers instance `target` of `current` with `valid` and a new token
    /// ([`Registry::with_instance`]), conditional on `current`'s version, audited as
    /// `plugin.reregister` with the instance. The inner error is the store's refusal
    /// of the write, for the caller to retry or answer.
    pub(super) async fn register_in(
        &self,
        current: &PluginRecord,
        valid: &CheckedManifest,
        target: &InstanceId,
        trace_id: &str,
    ) -> Result<Result<IssuedRegistration, StoreError>, RegistryError> {
        let new_instance = current.instance(target).is_none();
        let now = self.now();
        let issued = self.issue(&current.plugin_id, now).await?;
        let next = self.with_instance(current, valid, target, &issued.jti, now)?;
        let id = current.plugin_id.as_str();
        let entry = self.tx_entry(
            trace_id,
            &Subject {
                actor: &plugin_actor(id),
                action: "plugin.reregister",
                target: id,
            },
            "registered",
            || super::register::registration_details(target, new_instance, issued.expires_at),
        );
        Ok(self
            .store_replace(next, current.version, entry.as_ref())
            .await
            .map(|stored| {
                tracing::info!(plugin_id = %stored.plugin_id, instance = %target, new_instance, "plugin re-registered");
                let mut reg = self.issued(issued, target, stored, true, entry.is_some());
                reg.new_instance = new_instance;
                reg
            }))
    }

    /// The instance a registration presenting a token of instance `own` is for: the
    /// one it names, else its own.
    pub(super) fn target_instance(named: Option<&InstanceId>, own: &InstanceId) -> InstanceId {
        named.unwrap_or(own).clone()
    }

    /// The instance a registration without a plugin token is for.
    pub(super) fn named_or_default(named: Option<&InstanceId>) -> InstanceId {
        named.cloned().unwrap_or_else(InstanceId::default_instance)
    }
}
