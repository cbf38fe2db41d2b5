//! Who is calling: admin and registration secrets, plugin tokens (revoked by `jti`),
//! audited refusals, and token introspection.

use super::*;

impl Registry {
    pub(super) fn is_secret(given: &str, secret: Option<&Secret>) -> bool {
        secret.is_some_and(|s| bool::from(given.as_bytes().ct_eq(s.expose().as_bytes())))
    }

    /// The record of a current plugin token, if the plugin is enabled and nothing it
    /// declares waits for approval.
    ///
    /// # Errors
    /// `Unauthorized` (revoked token, plugin gone), `PluginDisabled`,
    /// `Forbidden("pending_approval")`, `Unavailable`.
    pub async fn current_enabled_record(
        &self,
        claims: &TokenClaims,
    ) -> Result<PluginRecord, RegistryError> {
        let record = self.current_record(claims).await?;
        if !record.enabled {
            Err(RegistryError::PluginDisabled)
        } else if record.pending_approval() {
            Err(RegistryError::Forbidden("pending_approval"))
        } else {
            Ok(record)
        }
    }

    /// Verifies a caller's token; a refusal is audited (rate-limited).
    pub(super) async fn verify(
        &self,
        token: &str,
        grace: Duration,
    ) -> Result<TokenClaims, RegistryError> {
        let verified = self.verify_token(token, grace).await;
        if let Err(RegistryError::Unauthorized(reason)) = &verified {
            self.note_rejection(None, reason).await;
        }
        verified
    }

    /// Verifies a token's signature and expiry (no audit: also used for tokens that
    /// are not the caller's, as in introspection).
    pub(super) async fn verify_token(
        &self,
        token: &str,
        grace: Duration,
    ) -> Result<TokenClaims, RegistryError> {
        let opts = VerifyOptions {
            now: self.now(),
            expired_grace: grace,
        };
        self.inner
            .ports
            .tokens
            .verify(token, opts)
            .await
            // No issuer makes a token with the id that marks revoked tokens; one that
            // carries it was not made by us.
            .and_then(|claims| {
                if claims.jti == vivified_ports::REVOKED_JTI {
                    Err(TokenError::Invalid("jti"))
                } else {
                    Ok(claims)
                }
            })
            .map_err(|e| match e {
                TokenError::Expired => RegistryError::Unauthorized("expired_token"),
                TokenError::Invalid(_) => RegistryError::Unauthorized("invalid_token"),
                TokenError::Signing(source) => RegistryError::Unavailable {
                    what: "token issuer",
                    source,
                },
            })
    }

    /// Identifies the caller from a bearer credential (signature and expiry only).
    ///
    /// # Errors
    /// [`RegistryError::Unauthorized`] if there is none or it does not verify.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Caller, RegistryError> {
        let bearer = bearer.ok_or(RegistryError::Unauthorized("missing_credentials"))?;
        if Self::is_secret(bearer, self.inner.config.admin_token.as_ref()) {
            return Ok(Caller::Operator(Principal::bootstrap()));
        }
        if operators::is_operator_token(bearer) {
            return self
                .authenticate_operator_token(bearer)
                .await
                .map(Caller::Operator);
        }
        if let Some(identity) = &self.inner.ports.identity
            && identity.recognizes(bearer)
        {
            return self
                .authenticate_external(identity.as_ref(), bearer)
                .await
                .map(Caller::Operator);
        }
        self.verify(bearer, Duration::ZERO)
            .await
            .map(Caller::Plugin)
    }

    /// The record of the token's own plugin, if the token is still its current one.
    ///
    /// # Errors
    /// `Unauthorized("unknown_plugin" | "revoked_token")`, `Unavailable`.
    /// The caller's record, if its token is still current; a refusal is audited
    /// (rate-limited).
    pub(super) async fn current_record(
        &self,
        claims: &TokenClaims,
    ) -> Result<PluginRecord, RegistryError> {
        let current = self.current_record_of(claims).await;
        if let Err(RegistryError::Unauthorized(reason)) = &current {
            self.note_rejection(Some(&claims.plugin_id), reason).await;
        }
        current
    }

    /// Audits a rejected token use: at most one entry per plugin (or per anonymous
    /// caller) and reason per minute on this replica, so a flood cannot fill the log.
    /// Best effort: the request is refused anyway, so a failing append is only logged.
    pub(super) async fn note_rejection(&self, plugin: Option<&PluginId>, reason: &'static str) {
        let now = self.now();
        let who = plugin.map_or("-", PluginId::as_str);
        {
            let mut seen = self
                .inner
                .rejections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.len() >= MAX_REJECTION_KEYS {
                seen.retain(|_, at| now - *at < REJECTION_WINDOW);
                if seen.len() >= MAX_REJECTION_KEYS {
                    seen.clear();
                }
            }
            let key = (who.to_owned(), reason);
            if seen
                .get(&key)
                .is_some_and(|at| now - *at < REJECTION_WINDOW)
            {
                return;
            }
            seen.insert(key, now);
        }
        let actor = plugin.map_or_else(|| "anonymous".to_owned(), |p| plugin_actor(p.as_str()));
        let audited = self
            .audit(
                "-",
                Subject {
                    actor: &actor,
                    action: "token.rejected",
                    target: who,
                },
                AuditOutcome::Denied,
                reason,
                Value::Null,
            )
            .await;
        if let Err(e) = audited {
            tracing::error!(error = %e, reason, "a rejected token use was not audited");
        }
    }

    /// The record a token belongs to, if the token is still current (no audit).
    pub(super) async fn current_record_of(
        &self,
        claims: &TokenClaims,
    ) -> Result<PluginRecord, RegistryError> {
        let record = self
            .inner
            .ports
            .store
            .get(&claims.plugin_id)
            .await?
            .ok_or(RegistryError::Unauthorized("unknown_plugin"))?;
        if record.instance_by_jti(&claims.jti).is_none() {
            return Err(RegistryError::Unauthorized("revoked_token"));
        }
        Ok(record)
    }

    /// 403 for a plugin token used where it has no business — unless the token is no
    /// longer current, which is 401 (a gone or revoked token is 401 everywhere).
    pub(super) async fn forbidden_unless_stale(
        &self,
        claims: &TokenClaims,
        reason: &'static str,
    ) -> RegistryError {
        match self.current_record(claims).await {
            Ok(_) => RegistryError::Forbidden(reason),
            Err(e) => e,
        }
    }

    /// Checks that `bearer` is the current token of plugin `id` and returns its claims
    /// and record. Disabled plugins pass; callers that must refuse them check `enabled`.
    pub(super) async fn authorize_plugin(
        &self,
        id: &str,
        bearer: Option<&str>,
    ) -> Result<(TokenClaims, PluginRecord), RegistryError> {
        let claims = match self.authenticate(bearer).await? {
            Caller::Operator(_) => return Err(RegistryError::Forbidden("plugin_token_required")),
            Caller::Plugin(c) => c,
        };
        let record = self.current_record(&claims).await?;
        if claims.plugin_id.as_str() != id {
            return Err(RegistryError::Forbidden("token_for_another_plugin"));
        }
        Ok((claims, record))
    }

    /// Checks that a plugin token is still current and answers the 403 an admin-only
    /// operation gives it (401 if it is not current).
    ///
    /// # Errors
    /// Always: `Unauthorized` or `Forbidden("admin_token_required")`.
    pub async fn refuse_plugin_on_admin_route(&self, claims: &TokenClaims) -> RegistryError {
        self.forbidden_unless_stale(claims, "admin_token_required")
            .await
    }

    /// Token introspection for plugins that serve other plugins: the caller (a plugin
    /// with its own current token, or the admin) asks whether `token` is a current
    /// token of an enabled plugin, and what that plugin declared. An inactive answer
    /// carries no details, whatever the reason.
    ///
    /// # Errors
    /// The caller's own `Unauthorized` / `PluginDisabled`; `Unavailable`.
    pub async fn introspect(
        &self,
        bearer: Option<&str>,
        token: &str,
    ) -> Result<Introspection, RegistryError> {
        match self.authenticate(bearer).await? {
            Caller::Plugin(claims) => {
                self.current_enabled_record(&claims).await?;
            }
            Caller::Operator(p) => p.require(Operation::ReadPlugins)?,
        }
        let claims = match self.verify_token(token, Duration::ZERO).await {
            Ok(claims) => claims,
            Err(RegistryError::Unauthorized(_)) => return Ok(Introspection::inactive()),
            Err(e) => return Err(e),
        };
        let record = match self.current_record_of(&claims).await {
            Ok(record) if record.enabled && !record.pending_approval() => record,
            Ok(_) | Err(RegistryError::Unauthorized(_)) => return Ok(Introspection::inactive()),
            Err(e) => return Err(e),
        };
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Introspection {
            active: true,
            traits: strings(record.manifest.get("traits")),
            data_classification: strings(
                record
                    .manifest
                    .get("security")
                    .and_then(|s| s.get("data_classification")),
            ),
            expires_at: Some(claims.expires_at),
            plugin_id: Some(record.plugin_id),
        })
    }
}
