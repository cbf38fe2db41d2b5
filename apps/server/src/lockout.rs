//! Brute force: failed authentications (401 answers) are counted per client address
//! and per credential; past `VIVIFIED_AUTH_FAILURE_LIMIT` a minute, further requests
//! from that address, or with that credential, are answered 429 `too_many_requests`
//! before anything is read or verified, until the allowance is back. The count is per
//! replica.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use vivified_ports::{AuditEntry, AuditOutcome};

use crate::error::ApiError;
use crate::rate_limit::{ClientAddr, FailureKey};
use crate::state::AppState;

/// The public part of a bearer credential that names whose it is: an operator token's
/// prefix, or a plugin token's subject (read without verifying: a forged subject only
/// spends that subject's allowance faster, which the per-address limit bounds too).
fn credential_key(authorization: Option<&HeaderValue>) -> Option<FailureKey> {
    let value = authorization?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if let Some(rest) = token.strip_prefix(vivified_domain::registry::OPERATOR_TOKEN_PREFIX) {
        let prefix = rest.split('_').next()?;
        return (!prefix.is_empty() && prefix.len() <= 32)
            .then(|| FailureKey::Credential(format!("operator-token:{prefix}")));
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.get(..payload.len().min(4096))?)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    (sub.len() <= 255).then(|| FailureKey::Credential(format!("sub:{sub}")))
}

/// The middleware: refuse locked-out callers, count 401s.
pub async fn lock_out(
    State(state): State<AppState>,
    crate::telemetry::TraceId(trace_id): crate::telemetry::TraceId,
    req: Request,
    next: Next,
) -> Response {
    let limit = &state.auth_failures;
    if !limit.is_on() {
        return next.run(req).await;
    }
    // The credential is decoded only when needed: while no one is locked out, a
    // request that succeeds costs one atomic load and a reference count here.
    let addr = req.extensions().get::<ClientAddr>().map(|a| a.0);
    let authorization = req.headers().get(AUTHORIZATION).cloned();
    let keys = || {
        let mut keys: Vec<FailureKey> = Vec::with_capacity(2);
        keys.extend(addr.map(FailureKey::Address));
        keys.extend(credential_key(authorization.as_ref()));
        keys
    };
    if limit.any_locked()
        && let Some(wait) = limit.blocked(&keys())
    {
        metrics::counter!("vivified_auth_locked_out_total").increment(1);
        return ApiError::TooManyFailures(wait).into_response();
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        for (key, wait) in limit.failed(&keys()) {
            let target = match &key {
                FailureKey::Address(a) => format!("address:{a}"),
                FailureKey::Credential(c) => c.clone(),
            };
            tracing::warn!(target = %target, retry_after_secs = wait.as_secs(), "locked out after repeated failed authentications");
            let entry = AuditEntry {
                at: state.registry.now(),
                actor: "anonymous".to_owned(),
                action: "auth.locked_out".to_owned(),
                target,
                outcome: AuditOutcome::Denied,
                reason: "too_many_failures".to_owned(),
                trace_id: trace_id.to_string(),
                details: json!({ "locked_for_secs": wait.as_secs().max(1) }),
            };
            if let Err(e) = state.audit.log.append(entry).await {
                tracing::error!(error = %e, "a lock-out was not audited");
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bearer(token: &str) -> Option<HeaderValue> {
        Some(HeaderValue::from_str(&format!("Bearer {token}")).unwrap())
    }

    #[test]
    fn keys_name_the_credential_not_its_secret() {
        let op = format!("viv_op_0123456789ab_{}", "f".repeat(64));
        assert_eq!(
            credential_key(with_bearer(&op).as_ref()),
            Some(FailureKey::Credential("operator-token:0123456789ab".into()))
        );
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"ehr"}"#);
        assert_eq!(
            credential_key(with_bearer(&format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig")).as_ref()),
            Some(FailureKey::Credential("sub:ehr".into()))
        );
        assert_eq!(
            credential_key(with_bearer("some-admin-guess").as_ref()),
            None
        );
    }
}
