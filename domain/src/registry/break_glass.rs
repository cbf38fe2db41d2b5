//! Break-glass (emergency access): an operator with the operator role raises itself
//! to admin for a bounded time, giving a reason; the grant is kept in the store (so it
//! holds on every replica), audited, announced on the bus and counted.

use vivified_ports::{BreakGlass, Role};

use super::operators::operator_name;
use super::*;

/// The longest break-glass elevation.
pub const MAX_BREAK_GLASS: Duration = Duration::from_secs(4 * 3600);

impl Registry {
    /// Stores (or ends) `name`'s grant; an operator deleted meanwhile is the caller's
    /// credential gone.
    async fn store_grant(
        &self,
        name: &vivified_ports::OperatorName,
        grant: Option<&BreakGlass>,
    ) -> Result<(), RegistryError> {
        match self
            .inner
            .ports
            .operators
            .set_break_glass(name, grant)
            .await
        {
            Err(StoreError::NotFound) => Err(RegistryError::Unauthorized("invalid_token")),
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// Raises the calling operator (role `operator`, by its own token) to `admin` for
    /// `duration` (at most [`MAX_BREAK_GLASS`]), giving `reason` (at least 10
    /// characters), if break-glass is on. Audited (`access.break_glass`, with the reason
    /// and the end), announced on the bus (`security.break_glass`) and counted, so that
    /// someone looks; every action under it is audited with `auth: break_glass`.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden` (`break_glass_disabled`; `break_glass_for_operators`:
    /// not a named operator with the operator role), `RoleRequired`, `InvalidRequest`,
    /// `Unavailable`.
    pub async fn break_glass(
        &self,
        bearer: Option<&str>,
        reason: &str,
        duration: Duration,
        trace_id: &str,
    ) -> Result<BreakGlass, RegistryError> {
        let principal = self.authorize(bearer, Operation::BreakGlass).await?;
        if !self.inner.config.break_glass {
            return Err(RegistryError::Forbidden("break_glass_disabled"));
        }
        if principal.auth != AuthMethod::Token || principal.role != Role::Operator {
            return Err(RegistryError::Forbidden("break_glass_for_operators"));
        }
        let reason = reason.trim();
        if reason.chars().count() < 10 || reason.chars().count() > 1000 {
            return Err(RegistryError::InvalidRequest(
                "`reason` must say why, in 10 to 1000 characters",
            ));
        }
        if duration.is_zero() || duration > MAX_BREAK_GLASS {
            return Err(RegistryError::InvalidRequest(
                "`duration` must be between 1s and 4h, e.g. \"30m\"",
            ));
        }
        let now = self.now();
        let grant = BreakGlass {
            reason: reason.to_owned(),
            granted_at: now,
            until: now + duration,
        };
        let name = operator_name(&principal.name)?;
        self.store_grant(&name, Some(&grant)).await?;
        let target = principal.actor();
        self.audit_by(
            &principal,
            "access.break_glass",
            &target,
            trace_id,
            json!({
                "reason": grant.reason,
                "until": grant.until.unix_timestamp(),
            }),
        )
        .await?;
        metrics::counter!("vivified_break_glass_total").increment(1);
        tracing::warn!(operator = %name, until = %grant.until, "break-glass: an operator raised itself to admin");
        let event = BusEvent {
            event_id: format!("security.break_glass:{name}:{}", now.unix_timestamp_nanos()),
            event_type: "security.break_glass".to_owned(),
            trace_id: trace_id.to_owned(),
            source: "core".to_owned(),
            data_traits: Vec::new(),
            at: now,
            payload: json!({
                "operator": name.as_str(),
                "until": grant.until.unix_timestamp(),
            }),
            metadata: std::collections::BTreeMap::new(),
        };
        if let Err(e) = self.inner.ports.bus.publish(event).await {
            metrics::counter!("vivified_bus_errors_total").increment(1);
            tracing::warn!(error = %e, "the break-glass event was not published");
        }
        Ok(grant)
    }

    /// Ends the calling operator's break-glass elevation, if any. Audited
    /// (`access.break_glass_end`).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `RoleRequired`, `Unavailable`.
    pub async fn end_break_glass(
        &self,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<(), RegistryError> {
        let principal = self.authorize(bearer, Operation::BreakGlass).await?;
        if !matches!(principal.auth, AuthMethod::Token | AuthMethod::BreakGlass) {
            // The bootstrap principal and a provider's user are never raised: nothing
            // to end (and a provider's user named like an operator is not it).
            return Ok(());
        }
        let name = operator_name(&principal.name)?;
        let before = self.inner.ports.operators.operator(&name).await?;
        if before.and_then(|o| o.break_glass).is_none() {
            return Ok(());
        }
        self.store_grant(&name, None).await?;
        let target = principal.actor();
        self.audit_by(
            &principal,
            "access.break_glass_end",
            &target,
            trace_id,
            Value::Null,
        )
        .await?;
        tracing::info!(operator = %name, "break-glass ended");
        Ok(())
    }
}
