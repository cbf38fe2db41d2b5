//! One-time enrollment: an operator mints a token bound to one plugin id; a
//! registration presenting it registers that id (as new, or taking over an id whose
//! tokens were revoked), once. The store keeps the token's SHA-256, never the token.

use sha2::{Digest, Sha256};
use vivified_ports::Enrollment;

use super::*;

/// Every enrollment token starts with this, so a registration tells it from a plugin
/// token or a secret without a store read.
pub const ENROLLMENT_PREFIX: &str = "venr_";

/// The longest life of an enrollment token.
pub const MAX_ENROLLMENT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long an enrollment that can no longer register (used or expired) is kept
/// before [`Registry::purge_enrollments`] deletes it (its use and its creation stay on
/// the audit trail).
pub const ENROLLMENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most enrollments one listing returns.
pub const MAX_ENROLLMENT_PAGE: usize = 1000;

/// A freshly minted enrollment: the token goes to the operator once.
#[derive(Clone, Debug)]
pub struct IssuedEnrollment {
    /// The enrollment's public id.
    pub id: String,
    /// The plugin id it registers.
    pub plugin_id: PluginId,
    /// The one-time token.
    pub token: Secret,
    /// It registers nothing from this instant on.
    pub expires_at: OffsetDateTime,
}

/// Lowercase hex SHA-256 of an enrollment token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `bearer` has the shape of an enrollment token.
pub(super) fn is_enrollment_token(bearer: &str) -> bool {
    bearer.starts_with(ENROLLMENT_PREFIX)
}

impl Registry {
    /// Mints a one-time enrollment token for plugin `plugin_id`, valid for `ttl` (at
    /// most [`MAX_ENROLLMENT_TTL`]). Admin only; audited (`enrollment.create`, with the
    /// enrollment's id, never the token).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `InvalidRequest` (a bad id or lifetime),
    /// `Unavailable`.
    pub async fn enroll(
        &self,
        bearer: Option<&str>,
        plugin_id: &str,
        ttl: Duration,
        trace_id: &str,
    ) -> Result<IssuedEnrollment, RegistryError> {
        let principal = self.authorize(bearer, Operation::Enroll).await?;
        let actor = principal.actor();
        let plugin_id = PluginId::parse(plugin_id).map_err(|_| {
            RegistryError::InvalidRequest(
                "`plugin_id` must be 1 to 63 characters of lowercase letters, digits and '-'",
            )
        })?;
        if ttl.is_zero() || ttl > MAX_ENROLLMENT_TTL {
            return Err(RegistryError::InvalidRequest(
                "`ttl` must be a duration between 1s and 7d, e.g. \"1h\"",
            ));
        }
        let now = self.now();
        // Two version-4 UUIDs: 244 random bits from the OS's generator.
        let token = format!(
            "{ENROLLMENT_PREFIX}{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let enrollment = Enrollment {
            id: uuid::Uuid::new_v4().simple().to_string(),
            plugin_id: plugin_id.clone(),
            token_hash: token_hash(&token),
            created_at: now,
            expires_at: now + ttl,
            created_by: actor.clone(),
            used_at: None,
        };
        self.inner
            .ports
            .store
            .create_enrollment(&enrollment)
            .await?;
        self.audit(
            trace_id,
            Subject {
                actor: &actor,
                action: "enrollment.create",
                target: plugin_id.as_str(),
            },
            AuditOutcome::Success,
            "created",
            principal.stamp(json!({
                "enrollment_id": enrollment.id,
                "expires_at": enrollment.expires_at.unix_timestamp(),
            })),
        )
        .await?;
        tracing::info!(plugin_id = %plugin_id, enrollment_id = %enrollment.id, "enrollment token minted");
        Ok(IssuedEnrollment {
            id: enrollment.id,
            plugin_id,
            token: Secret::new(token),
            expires_at: enrollment.expires_at,
        })
    }

    /// Registers `manifest` with enrollment token `token`: 401 (unknown, used,
    /// expired, or for another id) before 400 (the manifest's violations) before 409 (the
    /// id is held by a plugin whose tokens were not revoked). The enrollment is used
    /// only by a registration that succeeds.
    pub(super) async fn register_enrolled(
        &self,
        manifest: Value,
        instance: &InstanceId,
        token: &str,
        trace_id: &str,
    ) -> Result<(IssuedRegistration, Option<PluginRecord>), RegistryError> {
        let hash = token_hash(token);
        let store = &self.inner.ports.store;
        let enrollment = store
            .enrollment(&hash)
            .await?
            .ok_or(RegistryError::Unauthorized("invalid_enrollment"))?;
        let refusal = |e: &Enrollment, now: OffsetDateTime| {
            if e.used_at.is_some() {
                Some("enrollment_used")
            } else if now >= e.expires_at {
                Some("enrollment_expired")
            } else {
                None
            }
        };
        if let Some(why) = refusal(&enrollment, self.now()) {
            return Err(RegistryError::Unauthorized(why));
        }
        let claimed = manifest.get("id").and_then(Value::as_str);
        if claimed != Some(enrollment.plugin_id.as_str()) {
            // Checked on the raw manifest, so that a token never learns whether a
            // manifest for another id would be valid.
            return Err(RegistryError::Unauthorized("enrollment_for_another_plugin"));
        }
        let valid = self
            .inner
            .validator
            .check_owned(manifest)
            .map_err(RegistryError::InvalidManifest)?;
        let now = self.now();
        let used = match store.use_enrollment(&hash, now).await {
            Ok(used) => used,
            // Used or expired since it was read: say which.
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => {
                let why = match store.enrollment(&hash).await? {
                    // Cancelled meanwhile.
                    None => "invalid_enrollment",
                    Some(e) => refusal(&e, now).unwrap_or("enrollment_used"),
                };
                return Err(RegistryError::Unauthorized(why));
            }
            Err(e) => return Err(RegistryError::store(e)),
        };
        let registered = match self.insert_new(&valid, instance, trace_id).await {
            Ok(reg) => Ok((reg, None)),
            Err(RegistryError::AlreadyRegistered) => {
                match self.replace_held(&valid, instance, false, trace_id).await {
                    Err(RegistryError::AlreadyRegistered) => {
                        self.admit_enrolled(&valid, instance, trace_id).await
                    }
                    replaced => replaced,
                }
            }
            Err(e) => Err(e),
        };
        match registered {
            Ok((mut reg, previous)) => {
                reg.enrollment_id = Some(used.id);
                Ok((reg, previous))
            }
            Err(e) => {
                // Nothing was registered: the token stays good for another try.
                if let Err(release) = store.release_enrollment(&hash, now).await {
                    tracing::error!(enrollment_id = %used.id, error = %release, "an enrollment used by a failed registration was not released");
                }
                Err(e)
            }
        }
    }

    /// Up to `limit` (at most [`MAX_ENROLLMENT_PAGE`]) enrollments, used or not, newest
    /// first, only those for `plugin_id` if given. Admin only.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `InvalidRequest` (a bad plugin id), `Unavailable`.
    pub async fn list_enrollments(
        &self,
        bearer: Option<&str>,
        plugin_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Enrollment>, RegistryError> {
        self.authorize(bearer, Operation::Enroll).await?;
        let plugin_id = plugin_id
            .map(|p| {
                PluginId::parse(p).map_err(|_| {
                    RegistryError::InvalidRequest(
                        "`plugin_id` must be 1 to 63 characters of lowercase letters, digits and '-'",
                    )
                })
            })
            .transpose()?;
        Ok(self
            .inner
            .ports
            .store
            .list_enrollments(plugin_id, limit.min(MAX_ENROLLMENT_PAGE))
            .await?)
    }

    /// Cancels the unused enrollment `id`: its token registers nothing from now on
    /// (`invalid_enrollment`). Admin only; audited (`enrollment.cancel`).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound`, `Conflict("enrollment_used")` (a used
    /// enrollment is history, not cancelled), `Unavailable`.
    pub async fn cancel_enrollment(
        &self,
        bearer: Option<&str>,
        id: &str,
        trace_id: &str,
    ) -> Result<Enrollment, RegistryError> {
        let principal = self.authorize(bearer, Operation::Enroll).await?;
        let actor = principal.actor();
        let cancelled = match self.inner.ports.store.cancel_enrollment(id).await {
            Ok(e) => e,
            Err(StoreError::NotFound) => return Err(RegistryError::NotFound),
            Err(StoreError::PreconditionFailed) => {
                return Err(RegistryError::Conflict("enrollment_used"));
            }
            Err(e) => return Err(RegistryError::store(e)),
        };
        self.audit(
            trace_id,
            Subject {
                actor: &actor,
                action: "enrollment.cancel",
                target: cancelled.plugin_id.as_str(),
            },
            AuditOutcome::Success,
            "cancelled",
            principal.stamp(json!({ "enrollment_id": cancelled.id })),
        )
        .await?;
        tracing::info!(plugin_id = %cancelled.plugin_id, enrollment_id = %cancelled.id, "enrollment cancelled");
        Ok(cancelled)
    }

    /// Deletes the enrollments that ended (were used, or expired) more than
    /// [`ENROLLMENT_RETENTION`] ago; run it now and then (the server does, hourly). Safe
    /// with several replicas. Audited (`enrollment.purge`, actor `system`) when it
    /// deleted any.
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn purge_enrollments(&self) -> Result<u64, RegistryError> {
        let retention =
            time::Duration::try_from(ENROLLMENT_RETENTION).unwrap_or(time::Duration::MAX);
        let now = self.now();
        let before = now.checked_sub(retention).unwrap_or(now);
        let purged = self.inner.ports.store.purge_enrollments(before).await?;
        if purged > 0 {
            self.audit(
                "system",
                Subject {
                    actor: "system",
                    action: "enrollment.purge",
                    target: "enrollments",
                },
                AuditOutcome::Success,
                "retention",
                json!({ "deleted": purged, "ended_before": before.unix_timestamp() }),
            )
            .await?;
            tracing::info!(deleted = purged, "ended enrollments purged");
        }
        Ok(purged)
    }

    /// Audits the use of an enrollment by a stored registration.
    pub(super) async fn audit_enrollment_use(
        &self,
        reg: &IssuedRegistration,
        trace_id: &str,
    ) -> Result<(), RegistryError> {
        let Some(id) = &reg.enrollment_id else {
            return Ok(());
        };
        self.audit(
            trace_id,
            Subject {
                actor: &plugin_actor(reg.plugin_id.as_str()),
                action: "enrollment.use",
                target: reg.plugin_id.as_str(),
            },
            AuditOutcome::Success,
            "registered",
            json!({ "enrollment_id": id }),
        )
        .await
    }
}
