//! Registration, re-registration and token refresh, each committed with its audit
//! entry and lifecycle event.

use super::*;

impl Registry {
    /// Registers a plugin, or re-registers it when `bearer` is its current token.
    ///
    /// A new id needs no credential in dev mode and the registration secret in
    /// production mode. An id that is held needs the plugin's current token (which may
    /// have expired less than `reregister_grace` ago); the registration secret never
    /// re-registers a held id. Re-registration replaces the manifest, keeps
    /// `registered_at`, the liveness and the enabled flag, and rotates the token.
    ///
    /// # Errors
    /// `InvalidManifest`, `Unauthorized`, `AlreadyRegistered`, `Unavailable`.
    pub async fn register(
        &self,
        manifest: &Value,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        self.register_instance(manifest.clone(), None, bearer, trace_id)
            .await
    }

    /// [`Registry::register`] taking the manifest by value, which saves a copy of it.
    ///
    /// # Errors
    /// As [`Registry::register`].
    pub async fn register_owned(
        &self,
        manifest: Value,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        self.register_instance(manifest, None, bearer, trace_id)
            .await
    }

    /// [`Registry::register_owned`] for the instance `instance` (`None`: the bearer
    /// token's own instance, or `default`). The rules of instances are in
    /// `registry/instances.rs`: a new instance of a registered plugin needs a current
    /// token of one of its instances or an enrollment token.
    ///
    /// # Errors
    /// As [`Registry::register`]; `Conflict("too_many_instances")`.
    pub async fn register_instance(
        &self,
        manifest: Value,
        instance: Option<InstanceId>,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        let target = manifest
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| PluginId::is_valid(s))
            .unwrap_or("-")
            .to_owned();
        let target = target.as_str();
        let result = self
            .register_inner(manifest, instance.as_ref(), bearer, trace_id)
            .await;
        match &result {
            Ok((reg, _)) if reg.replaced.is_some() => metrics::counter!(
                "vivified_registrations_total",
                "outcome" => "accepted",
                "reason" => "replaced_stale"
            )
            .increment(1),
            Ok((reg, _)) if reg.reregistered => count(
                &self.inner.counters.reregistered,
                || metrics::counter!("vivified_registrations_total", "outcome" => "accepted", "reason" => "reregistered"),
            ),
            Ok(_) => count(
                &self.inner.counters.registered,
                || metrics::counter!("vivified_registrations_total", "outcome" => "accepted", "reason" => "registered"),
            ),
            Err(e) => metrics::counter!(
                "vivified_registrations_total",
                "outcome" => "rejected",
                "reason" => e.code()
            )
            .increment(1),
        }
        if let Ok((reg, _)) = &result
            && let Err(e) = self.audit_enrollment_use(reg, trace_id).await
        {
            // The registration itself is audited below; it stands.
            tracing::error!(plugin_id = %reg.plugin_id, error = %e, "the use of an enrollment was not audited");
        }
        match &result {
            Ok((reg, previous)) if reg.replaced.is_some() => {
                self.replaced(reg, previous.as_ref(), trace_id).await?;
            }
            Ok((reg, previous)) => {
                let action = if reg.reregistered {
                    "plugin.reregister"
                } else {
                    "plugin.register"
                };
                let audited = if reg.audited {
                    Ok(())
                } else {
                    self.audit(
                        trace_id,
                        Subject {
                            actor: &plugin_actor(target),
                            action,
                            target,
                        },
                        AuditOutcome::Success,
                        "registered",
                        registration_details(&reg.instance_id, reg.new_instance, reg.expires_at),
                    )
                    .await
                };
                // Fail closed: an unaudited registration must not stand.
                if let Err(e) = audited {
                    self.undo(&reg.record, previous.clone()).await;
                    return Err(e);
                }
                let event = if reg.reregistered {
                    "plugin.reregistered"
                } else {
                    "plugin.registered"
                };
                self.lifecycle(event, &reg.plugin_id, &reg.token_jti, trace_id)
                    .await;
                if previous
                    .as_ref()
                    .is_some_and(|p| p.status == Liveness::Stale)
                {
                    self.recovered(&reg.record, trace_id).await;
                }
            }
            Err(e) => {
                let (reason, details) = match e {
                    RegistryError::InvalidManifest(v) => (
                        "invalid_manifest",
                        json!({ "violations": v.iter().map(|v| json!({"path": v.path, "code": v.code})).collect::<Vec<_>>() }),
                    ),
                    RegistryError::Unauthorized(r) | RegistryError::Forbidden(r) => {
                        (*r, Value::Null)
                    }
                    RegistryError::AlreadyRegistered => ("already_registered", Value::Null),
                    RegistryError::Conflict(r) => (*r, Value::Null),
                    _ => return result.map(|(reg, _)| reg),
                };
                self.audit(
                    trace_id,
                    Subject {
                        actor: "anonymous",
                        action: "plugin.register",
                        target,
                    },
                    AuditOutcome::Denied,
                    reason,
                    details,
                )
                .await?;
            }
        }
        result.map(|(reg, _)| reg)
    }

    /// Undoes a write whose audit entry could not be stored: restores `previous`, or
    /// deletes `written` if there was none. Conditional, so a later write is never
    /// overwritten. Until the audit issue writes state and entry in one transaction,
    /// this is how an operation fails closed.
    pub(super) async fn undo(&self, written: &PluginRecord, previous: Option<PluginRecord>) {
        let undone = match previous {
            Some(prev) => self
                .inner
                .ports
                .store
                .replace(prev, written.version)
                .await
                .map(|_| ()),
            None => {
                self.inner
                    .ports
                    .store
                    .delete(&written.plugin_id, Some(written.version))
                    .await
            }
        };
        if let Err(e) = undone {
            tracing::error!(plugin_id = %written.plugin_id, error = %e, "could not undo an unaudited write");
        }
    }

    /// Registers or re-registers; also returns the record a re-registration replaced.
    pub(super) async fn register_inner(
        &self,
        manifest: Value,
        instance: Option<&InstanceId>,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<(IssuedRegistration, Option<PluginRecord>), RegistryError> {
        if let Some(token) = bearer.filter(|b| enroll::is_enrollment_token(b)) {
            let instance = Self::named_or_default(instance);
            return self
                .register_enrolled(manifest, &instance, token, trace_id)
                .await;
        }
        let claimed_id = manifest
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| PluginId::parse(s).ok());
        // Fast path for the credentials that can only register a NEW id (none in dev
        // mode, or the registration secret): validate, then try the insert and let the
        // store's primary key decide — one round trip instead of a read and a write.
        // An invalid manifest is 400 with its violations whatever its id; 409 is only
        // for a valid manifest whose id is taken.
        let new_only = bearer.map_or(self.inner.config.mode == Mode::Dev, |b| {
            Self::is_secret(b, self.inner.config.registration_secret.as_ref())
        });
        if new_only {
            let valid = self
                .inner
                .validator
                .check_owned(manifest)
                .map_err(RegistryError::InvalidManifest)?;
            let instance = Self::named_or_default(instance);
            return match self.insert_new(&valid, &instance, trace_id).await {
                // A held id: a registration credential takes it over only from a
                // registration whose tokens were revoked, or (dev mode, no credential)
                // from a stale one.
                Err(RegistryError::AlreadyRegistered) => {
                    let stale_too = bearer.is_none() && self.replaces_stale();
                    self.replace_held(&valid, &instance, stale_too, trace_id)
                        .await
                }
                inserted => inserted.map(|reg| (reg, None)),
            };
        }
        let existing = match &claimed_id {
            Some(id) => self.inner.ports.store.get(id).await?,
            None => None,
        };
        match existing {
            Some(current) => {
                self.reregister(manifest, instance, bearer, current, trace_id)
                    .await
            }
            None => {
                if self.inner.config.mode == Mode::Production
                    && !bearer.is_some_and(|b| {
                        Self::is_secret(b, self.inner.config.registration_secret.as_ref())
                    })
                {
                    return Err(RegistryError::Unauthorized("registration_secret_required"));
                }
                let valid = self
                    .inner
                    .validator
                    .check_owned(manifest)
                    .map_err(RegistryError::InvalidManifest)?;
                self.insert_new(&valid, &Self::named_or_default(instance), trace_id)
                    .await
                    .map(|reg| (reg, None))
            }
        }
    }

    /// The record of a new registration of `valid` made `now` with token `issued` for
    /// instance `instance`: `registered`, health unknown, enabled, its first deadline a
    /// TTL away.
    pub(super) fn fresh_record(
        &self,
        valid: &crate::manifest::CheckedManifest,
        instance: &InstanceId,
        issued: &IssuedToken,
        now: OffsetDateTime,
        version: u64,
    ) -> PluginRecord {
        let deadline = now + self.inner.config.heartbeat_ttl;
        PluginRecord {
            plugin_id: valid.id.clone(),
            // Kept as compact text: the tree of a manifest is several KB per plugin.
            manifest: StoredManifest::from_value(&valid.raw),
            status: Liveness::Registered,
            health: Health::Unknown,
            enabled: true,
            disabled_reason: None,
            registered_at: now,
            last_heartbeat: None,
            instances: vec![InstanceRecord::new(
                instance.clone(),
                issued.jti.clone(),
                now,
                Some(deadline),
            )],
            approved_traits: self.initial_approval(&valid.raw),
            next_deadline: Some(deadline),
            version,
        }
    }

    /// Inserts a validated manifest as a new registration with a fresh token.
    pub(super) async fn insert_new(
        &self,
        valid: &crate::manifest::CheckedManifest,
        instance: &InstanceId,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        let now = self.now();
        let issued = self.issue(&valid.id, now).await?;
        let record = self.fresh_record(valid, instance, &issued, now, 0);
        let entry = self.tx_entry(
            trace_id,
            &Subject {
                actor: &plugin_actor(valid.id.as_str()),
                action: "plugin.register",
                target: valid.id.as_str(),
            },
            "registered",
            || registration_details(instance, false, issued.expires_at),
        );
        let stored = self
            .store_insert(record, entry.as_ref())
            .await
            .map_err(|e| match e {
                StoreError::Conflict => RegistryError::AlreadyRegistered,
                e => RegistryError::store(e),
            })?;
        tracing::info!(plugin_id = %stored.plugin_id, instance = %instance, "plugin registered");
        Ok(self.issued(issued, instance, stored, false, entry.is_some()))
    }

    pub(super) async fn reregister(
        &self,
        manifest: Value,
        instance: Option<&InstanceId>,
        bearer: Option<&str>,
        mut current: PluginRecord,
        trace_id: &str,
    ) -> Result<(IssuedRegistration, Option<PluginRecord>), RegistryError> {
        // 401 (a credential that does not verify, or a revoked token of the plugin
        // itself) before 400 (the manifest's violations) before 409 (a valid manifest
        // with a credential that cannot take a held id or instance).
        let validate = |manifest: Value| {
            self.inner
                .validator
                .check_owned(manifest)
                .map_err(RegistryError::InvalidManifest)
        };
        let conflict =
            |manifest: Value| validate(manifest).and(Err(RegistryError::AlreadyRegistered));
        let Some(bearer) = bearer else {
            return conflict(manifest);
        };
        if Self::is_secret(bearer, self.inner.config.registration_secret.as_ref())
            || Self::is_secret(bearer, self.inner.config.admin_token.as_ref())
        {
            return conflict(manifest);
        }
        let claims = self
            .verify(bearer, self.inner.config.reregister_grace)
            .await?;
        if claims.plugin_id != current.plugin_id {
            return conflict(manifest);
        }
        // 401 before 400: a revoked token learns nothing about its manifest.
        let Some(own) = current.instance_by_jti(&claims.jti) else {
            return Err(RegistryError::Unauthorized("revoked_token"));
        };
        let target = Self::target_instance(instance, &own.instance_id);
        let valid = validate(manifest)?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(own) = current.instance_by_jti(&claims.jti) else {
                return Err(RegistryError::Unauthorized("revoked_token"));
            };
            // A token re-registers its own instance; another instance that exists is
            // its own holder's.
            let new_instance = current.instance(&target).is_none();
            if own.instance_id != target && !new_instance {
                return Err(RegistryError::AlreadyRegistered);
            }
            match self
                .register_in(&current, &valid, &target, trace_id)
                .await?
            {
                Ok(reg) => return Ok((reg, Some(current))),
                Err(e) => current = self.reread_for_retry(&claims.plugin_id, e).await?,
            }
        }
        Err(too_contended())
    }

    /// After a token holder's conditional write of `id`'s record failed with `e`: the
    /// record to try again with (another write came first: read it again), or the
    /// answer (the record is gone: its token is no longer current).
    pub(super) async fn reread_for_retry(
        &self,
        id: &PluginId,
        e: StoreError,
    ) -> Result<PluginRecord, RegistryError> {
        match e {
            StoreError::PreconditionFailed => self
                .inner
                .ports
                .store
                .get(id)
                .await?
                .ok_or(RegistryError::Unauthorized("unknown_plugin")),
            StoreError::NotFound => Err(RegistryError::Unauthorized("unknown_plugin")),
            e => Err(RegistryError::store(e)),
        }
    }

    pub(super) async fn issue(
        &self,
        id: &PluginId,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, RegistryError> {
        self.inner
            .ports
            .tokens
            .issue(id, now)
            .await
            .map_err(|e| match e {
                TokenError::Signing(source) => RegistryError::Unavailable {
                    what: "token issuer",
                    source,
                },
                other => RegistryError::Unavailable {
                    what: "token issuer",
                    source: Box::new(other),
                },
            })
    }

    pub(super) fn issued(
        &self,
        token: IssuedToken,
        instance: &InstanceId,
        record: PluginRecord,
        reregistered: bool,
        audited: bool,
    ) -> IssuedRegistration {
        IssuedRegistration {
            plugin_id: record.plugin_id.clone(),
            instance_id: instance.clone(),
            token_jti: token.jti,
            token: token.token,
            expires_at: token.expires_at,
            heartbeat_interval: self.inner.config.heartbeat_interval,
            reregistered,
            new_instance: false,
            replaced: None,
            record,
            enrollment_id: None,
            audited,
        }
    }

    /// The audit entry of a state change, when the store writes it in the change's
    /// transaction (`audit_in_store`); `None` when it is appended afterwards.
    pub(super) fn tx_entry(
        &self,
        trace_id: &str,
        subject: &Subject<'_>,
        reason: &str,
        details: impl FnOnce() -> Value,
    ) -> Option<AuditEntry> {
        self.inner.config.audit_in_store.then(|| AuditEntry {
            at: self.now(),
            actor: subject.actor.to_owned(),
            action: subject.action.to_owned(),
            target: subject.target.to_owned(),
            outcome: AuditOutcome::Success,
            reason: reason.to_owned(),
            trace_id: trace_id.to_owned(),
            details: details(),
        })
    }

    /// Inserts, with `entry` in the same transaction when there is one.
    pub(super) async fn store_insert(
        &self,
        record: PluginRecord,
        entry: Option<&AuditEntry>,
    ) -> Result<PluginRecord, StoreError> {
        let store = &self.inner.ports.store;
        match entry {
            Some(entry) => {
                let r = store.insert_audited(record, entry).await;
                Self::count_tx_append(&r);
                r
            }
            None => store.insert(record).await,
        }
    }

    /// Replaces, with `entry` in the same transaction when there is one.
    pub(super) async fn store_replace(
        &self,
        record: PluginRecord,
        expected_version: u64,
        entry: Option<&AuditEntry>,
    ) -> Result<PluginRecord, StoreError> {
        let store = &self.inner.ports.store;
        match entry {
            Some(entry) => {
                let r = store.replace_audited(record, expected_version, entry).await;
                Self::count_tx_append(&r);
                r
            }
            None => store.replace(record, expected_version).await,
        }
    }

    /// Replaces `current` with `next` (conditional on `current.version`) and audits it as
    /// `subject` with `reason` and `details`: in the write's transaction when the store
    /// keeps the audit log, else appended after the write. If that append fails the
    /// write is undone (failing closed) when `undo` says so, and stands otherwise (a
    /// revocation is never undone); either way the caller gets the audit error.
    pub(super) async fn replace_and_audit(
        &self,
        next: PluginRecord,
        current: &PluginRecord,
        change: Change<'_, impl Fn() -> Value>,
        undo: bool,
    ) -> Result<PluginRecord, WriteFailed> {
        let Change {
            trace_id,
            subject,
            reason,
            details,
        } = change;
        let entry = self.tx_entry(trace_id, &subject, reason, &details);
        let stored = self
            .store_replace(next, current.version, entry.as_ref())
            .await
            .map_err(WriteFailed::Store)?;
        if entry.is_none() {
            let audited = self
                .audit(trace_id, subject, AuditOutcome::Success, reason, details())
                .await;
            if let Err(e) = audited {
                if undo {
                    self.undo(&stored, Some(current.clone())).await;
                } else {
                    tracing::error!(plugin_id = %stored.plugin_id, action = subject.action, error = %e, "a change was applied but not audited");
                }
                return Err(WriteFailed::Audit(e));
            }
        }
        Ok(stored)
    }

    /// Deletes, with `entry` in the same transaction when there is one.
    pub(super) async fn store_delete(
        &self,
        id: &PluginId,
        expected_version: Option<u64>,
        entry: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.ports.store;
        match entry {
            Some(entry) => {
                let r = store.delete_audited(id, expected_version, entry).await;
                Self::count_tx_append(&r);
                r
            }
            None => store.delete(id, expected_version).await,
        }
    }

    pub(super) fn count_tx_append<T>(r: &Result<T, StoreError>) {
        let outcome = match r {
            Ok(_) => "ok",
            // The change was refused before anything was written: no append attempted.
            Err(StoreError::Conflict | StoreError::NotFound | StoreError::PreconditionFailed) => {
                return;
            }
            Err(_) => "failed",
        };
        metrics::counter!("vivified_audit_appends_total", "outcome" => outcome).increment(1);
    }

    /// Issues plugin `id` a fresh token; the old one stops working.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `PluginDisabled`, `Unavailable`.
    pub async fn refresh_token(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        let (claims, mut current) = self.authorize_plugin(id, bearer).await?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(own) = current.instance_by_jti(&claims.jti) else {
                return Err(RegistryError::Unauthorized("revoked_token"));
            };
            if !current.enabled {
                return Err(RegistryError::PluginDisabled);
            }
            let now = self.now();
            let issued = self.issue(&current.plugin_id, now).await?;
            let instance = own.instance_id.clone();
            let mut own = own.clone();
            own.token_jti = issued.jti.clone();
            own.token_issued_at = Some(now);
            let mut next = current.clone();
            next.put_instance(own);
            let actor = plugin_actor(current.plugin_id.as_str());
            let subject = Subject {
                actor: &actor,
                action: "token.refresh",
                target: current.plugin_id.as_str(),
            };
            match self
                .replace_and_audit(
                    next,
                    &current,
                    Change {
                        trace_id,
                        subject,
                        reason: "refreshed",
                        details: || json!({ "instance": instance }),
                    },
                    true,
                )
                .await
            {
                Ok(stored) => {
                    let in_tx = self.inner.config.audit_in_store;
                    return Ok(self.issued(issued, &instance, stored, false, in_tx));
                }
                Err(WriteFailed::Audit(e)) => return Err(e),
                Err(WriteFailed::Store(e)) => {
                    current = self.reread_for_retry(&claims.plugin_id, e).await?;
                }
            }
        }
        Err(too_contended())
    }
}

/// The audit details of a (re-)registration of `instance` (`new_instance`: added to a
/// registered plugin) whose token expires at `expires_at` (Unix seconds).
pub(super) fn registration_details(
    instance: &InstanceId,
    new_instance: bool,
    expires_at: OffsetDateTime,
) -> Value {
    json!({
        "instance": instance,
        "new_instance": new_instance,
        "token_expires_at": expires_at.unix_timestamp(),
    })
}
