//! Revocation by time: every token of one plugin, or of every plugin, issued at or before an
//! instant stops working on every replica at its next request (each request checks
//! its instance's `token_jti` in the store, which a revocation sets to
//! [`vivified_ports::REVOKED_JTI`]).

use super::*;

/// What a revocation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The instant: tokens issued at or before it were revoked.
    pub before: OffsetDateTime,
    /// How many plugins lost their token.
    pub revoked: u64,
}

impl Registry {
    /// The instant of a revocation: `at`, or now; never in the future (a token not
    /// issued yet cannot be revoked by time).
    fn revocation_instant(
        &self,
        at: Option<OffsetDateTime>,
    ) -> Result<OffsetDateTime, RegistryError> {
        let now = self.now();
        match at {
            None => Ok(now),
            Some(at) if at <= now => Ok(at),
            Some(_) => Err(RegistryError::InvalidRequest(
                "`at` must not be in the future",
            )),
        }
    }

    /// Revokes plugin `id`'s token if it was issued at or before `at` (default: now), so it
    /// must prove itself again with a registration credential (an operator who wants it
    /// kept out disables it). Admin only; audited in the change's transaction when the
    /// store keeps the audit log. Idempotent.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `InvalidRequest` (`at` in the future), `NotFound`,
    /// `Unavailable`.
    pub async fn revoke_plugin_tokens(
        &self,
        id: &str,
        bearer: Option<&str>,
        at: Option<OffsetDateTime>,
        trace_id: &str,
    ) -> Result<Revocation, RegistryError> {
        let principal = self.authorize(bearer, Operation::ManagePlugins).await?;
        let actor = principal.actor();
        let before = self.revocation_instant(at)?;
        let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
        for _ in 0..CAS_ATTEMPTS {
            let current = self.existing(&id).await?;
            let mut next = current.clone();
            let old = next.revoke_issued_before(before);
            let instances = next
                .instances
                .iter()
                .zip(&current.instances)
                .filter(|(n, c)| n.token_jti != c.token_jti)
                .count();
            let subject = Subject {
                actor: &actor,
                action: "plugin.revoke_tokens",
                target: id.as_str(),
            };
            let details = || {
                principal.stamp(json!({
                    "before": before.unix_timestamp(),
                    "revoked": u64::from(old),
                    "instances": instances,
                }))
            };
            if !old {
                self.audit(
                    trace_id,
                    subject,
                    AuditOutcome::Success,
                    "nothing_to_revoke",
                    details(),
                )
                .await?;
                return Ok(Revocation { before, revoked: 0 });
            }
            // Fail closed the other way round: a revocation is never undone; the
            // operator is told when it was not recorded.
            match self
                .replace_and_audit(
                    next,
                    &current,
                    Change {
                        trace_id,
                        subject,
                        reason: "revoked",
                        details,
                    },
                    false,
                )
                .await
            {
                Ok(stored) => {
                    tracing::warn!(plugin_id = %id, "plugin tokens revoked");
                    let key = format!("{}:{}", stored.registration_key(), stored.version);
                    self.lifecycle("plugin.tokens_revoked", &id, &key, trace_id)
                        .await;
                    return Ok(Revocation { before, revoked: 1 });
                }
                Err(e) => e.or_retry()?,
            }
        }
        Err(too_contended())
    }

    /// Revokes every plugin's token issued at or before `at` (default: now) in one store
    /// write, for a suspected key compromise. Admin only; audited once, with the count.
    /// A revocation is never undone: if its audit entry cannot be written the answer
    /// is `Unavailable` and the error is logged, but the tokens stay revoked.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `InvalidRequest` (`at` in the future),
    /// `Unavailable`.
    pub async fn revoke_all_tokens(
        &self,
        bearer: Option<&str>,
        at: Option<OffsetDateTime>,
        trace_id: &str,
    ) -> Result<Revocation, RegistryError> {
        let principal = self.authorize(bearer, Operation::RevokeAllTokens).await?;
        let actor = principal.actor();
        let before = self.revocation_instant(at)?;
        let revoked = self
            .inner
            .ports
            .store
            .revoke_tokens_issued_before(before)
            .await?;
        tracing::warn!(
            revoked,
            "tokens of every plugin issued before an instant revoked"
        );
        let audited = self
            .audit(
                trace_id,
                Subject {
                    actor: &actor,
                    action: "tokens.revoke",
                    target: "*",
                },
                AuditOutcome::Success,
                "revoked",
                principal.stamp(json!({ "before": before.unix_timestamp(), "revoked": revoked })),
            )
            .await;
        if let Err(e) = audited {
            tracing::error!(revoked, error = %e, "a token revocation was applied but not audited");
            return Err(e);
        }
        Ok(Revocation { before, revoked })
    }
}
