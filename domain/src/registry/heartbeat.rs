//! Heartbeats: authenticate the plugin, record its health, move its deadline.

use super::*;

impl Registry {
    /// Records a heartbeat from plugin `id`, authenticated by its current token.
    ///
    /// # Errors
    /// `Unauthorized` (missing, invalid, expired or revoked token; plugin gone),
    /// `Forbidden` (a token for another plugin, or the admin token), `PluginDisabled`,
    /// `Unavailable`.
    pub async fn heartbeat(
        &self,
        id: &str,
        bearer: Option<&str>,
        report: HeartbeatReport,
    ) -> Result<PluginRecord, RegistryError> {
        let claims = self.heartbeat_caller(id, bearer).await?;
        self.record_heartbeat(&claims, report, "system").await
    }

    /// First half of [`Registry::heartbeat`]: checks that `bearer` is a correctly signed
    /// token for plugin `id` (revocation is checked by [`Registry::record_heartbeat`]).
    /// Lets a server answer 401/403 before it looks at the request body.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `Unavailable`.
    pub async fn heartbeat_caller(
        &self,
        id: &str,
        bearer: Option<&str>,
    ) -> Result<TokenClaims, RegistryError> {
        let claims = match self.authenticate(bearer).await? {
            Caller::Operator(_) => return Err(RegistryError::Forbidden("plugin_token_required")),
            Caller::Plugin(c) => c,
        };
        if claims.plugin_id.as_str() != id {
            return Err(self
                .forbidden_unless_stale(&claims, "token_for_another_plugin")
                .await);
        }
        Ok(claims)
    }

    /// Checks that `claims` is its plugin's current token and that the plugin is
    /// enabled and approved (routes a disabled or unapproved plugin may not use check
    /// this before the body).
    ///
    /// # Errors
    /// `Unauthorized` (revoked token, plugin gone), `PluginDisabled`,
    /// `Forbidden("pending_approval")`, `Unavailable`.
    pub async fn require_enabled(&self, claims: &TokenClaims) -> Result<(), RegistryError> {
        self.current_enabled_record(claims).await.map(drop)
    }

    /// A heartbeat whose body was refused: 401 if the token is no longer current
    /// (authorization comes before the body), else the body's error.
    pub async fn refuse_heartbeat_body<E>(
        &self,
        claims: &TokenClaims,
        body_error: E,
    ) -> Result<E, RegistryError> {
        self.current_record(claims).await.map(|_| body_error)
    }

    /// Second half of [`Registry::heartbeat`]: one conditional store write that applies
    /// only if `claims.jti` is still the plugin's current token and it is enabled.
    ///
    /// # Errors
    /// `Unauthorized` (revoked token, plugin gone), `PluginDisabled`, `Unavailable`.
    pub async fn record_heartbeat(
        &self,
        claims: &TokenClaims,
        report: HeartbeatReport,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        let recorded = self.record_heartbeat_inner(claims, report, trace_id).await;
        if let Err(RegistryError::Unauthorized(reason)) = &recorded {
            self.note_rejection(Some(&claims.plugin_id), reason).await;
        }
        recorded
    }

    pub(super) async fn record_heartbeat_inner(
        &self,
        claims: &TokenClaims,
        report: HeartbeatReport,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        let now = self.now();
        match self
            .inner
            .ports
            .store
            .record_heartbeat(
                &claims.plugin_id,
                &claims.jti,
                report.health,
                now,
                now + self.inner.config.heartbeat_ttl,
            )
            .await
        {
            Ok(outcome) => {
                count(
                    &self.inner.counters.heartbeat_accepted,
                    || metrics::counter!("vivified_heartbeats_total", "outcome" => "accepted"),
                );
                if outcome.recovered {
                    self.recovered(&outcome.record, trace_id).await;
                }
                Ok(outcome.record)
            }
            Err(StoreError::NotFound) => Err(RegistryError::Unauthorized("unknown_plugin")),
            Err(StoreError::PreconditionFailed) => {
                // Rare path: find out which condition failed.
                match self.inner.ports.store.get(&claims.plugin_id).await? {
                    None => Err(RegistryError::Unauthorized("unknown_plugin")),
                    Some(r) if r.instance_by_jti(&claims.jti).is_none() => {
                        Err(RegistryError::Unauthorized("revoked_token"))
                    }
                    Some(r) if !r.enabled => Err(RegistryError::PluginDisabled),
                    Some(_) => Err(RegistryError::store(StoreError::Unavailable(
                        "heartbeat precondition failed on a current, enabled record".into(),
                    ))),
                }
            }
            Err(e) => Err(RegistryError::store(e)),
        }
    }
}
