//! Revocation by time: `POST /plugins/{id}/revoke-before` and
//! `POST /tokens/revoke-before` (admin), body `{"at": RFC 3339 | "now"}` (default now).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vivified_domain::Revocation;

use vivified_domain::Operation;

use crate::error::ApiError;
use crate::extract::{Bearer, OptionalJson};
use crate::state::AppState;
use crate::telemetry::TraceId;
use crate::wire::rfc3339;

/// Body of the revoke-before routes.
#[derive(Debug, Default, Deserialize)]
pub struct RevokeBody {
    /// Absent: now; `null` is refused like any other non-string.
    #[serde(default, deserialize_with = "crate::wire::present")]
    at: Option<Value>,
}

impl RevokeBody {
    /// The instant asked for; `None` for now.
    fn instant(&self) -> Result<Option<OffsetDateTime>, ApiError> {
        let bad = || {
            ApiError::InvalidBody(
                "`at` must be \"now\" or an RFC 3339 time with an offset, e.g. \"2026-12-07T09:30:00Z\""
                    .into(),
            )
        };
        match &self.at {
            None => Ok(None),
            Some(Value::String(s)) if s == "now" => Ok(None),
            Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
                .map(Some)
                .map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }
}

/// `{"before", "revoked"}`, plus `plugin_id` for one plugin.
fn answer(revocation: Revocation, plugin_id: Option<&str>) -> Json<Value> {
    let mut body = json!({
        "before": rfc3339(revocation.before),
        "revoked": revocation.revoked,
    });
    if let Some(id) = plugin_id {
        body["plugin_id"] = json!(id);
    }
    Json(body)
}

/// `POST /plugins/{id}/revoke-before` (admin): the plugin's token, if issued before
/// `at`, stops working on every replica.
pub async fn revoke_plugin(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
    body: Result<OptionalJson<RevokeBody>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    super::authorize_first(&state, &bearer, Operation::ManagePlugins).await?;
    let at = body?.0.instant()?;
    let revocation = state
        .registry
        .revoke_plugin_tokens(&id, bearer.as_deref(), at, &trace_id)
        .await?;
    Ok(answer(revocation, Some(&id)))
}

/// `POST /tokens/revoke-before` (admin): every plugin token issued before `at`.
pub async fn revoke_all(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    bearer: Bearer,
    body: Result<OptionalJson<RevokeBody>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    super::authorize_first(&state, &bearer, Operation::RevokeAllTokens).await?;
    let at = body?.0.instant()?;
    let revocation = state
        .registry
        .revoke_all_tokens(bearer.as_deref(), at, &trace_id)
        .await?;
    Ok(answer(revocation, None))
}

/// How long clients may cache the key set. A rotation publishes the new key next to
/// the old one well before it signs, so a cached set stays good for this long.
pub const JWKS_MAX_AGE_SECS: u32 = 300;

/// `GET /.well-known/jwks.json` (no credential): the public keys that verify plugin
/// tokens (EdDSA), so a plugin can check a core-issued token offline.
pub async fn jwks(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        )],
        Json(state.jwks.clone()),
    )
        .into_response()
}
