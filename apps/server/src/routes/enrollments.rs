//! `POST /enrollments` (admin): a one-time enrollment token for one plugin id.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{Bearer, OptionalJson};
use crate::state::AppState;
use crate::telemetry::TraceId;
use crate::wire::rfc3339;

/// Lifetime of an enrollment token when the request names none.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Body of `POST /enrollments`.
#[derive(Debug, Default, Deserialize)]
pub struct EnrollBody {
    plugin_id: Option<Value>,
    ttl: Option<Value>,
}

/// `POST /enrollments` (admin), body `{"plugin_id": "…", "ttl": "1h"}` → 201
/// `{"enrollment_id", "plugin_id", "token", "expires_at"}`.
pub async fn create(
    _admitted: crate::extract::Admitted,
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    bearer: Bearer,
    body: Result<OptionalJson<EnrollBody>, ApiError>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<Value>,
    ),
    ApiError,
> {
    // 401/403 before 400.
    super::admin_first(&state, &bearer).await?;
    let body = body?.0;
    let Some(Value::String(plugin_id)) = body.plugin_id else {
        return Err(ApiError::InvalidBody(
            "`plugin_id` is required: the plugin id the token registers".into(),
        ));
    };
    let ttl = match body.ttl {
        None => DEFAULT_TTL,
        Some(Value::String(s)) => humantime::parse_duration(s.trim()).map_err(|_| {
            ApiError::InvalidBody("`ttl` must be a duration between 1s and 7d, e.g. \"1h\"".into())
        })?,
        Some(_) => {
            return Err(ApiError::InvalidBody(
                "`ttl` must be a duration between 1s and 7d, e.g. \"1h\"".into(),
            ));
        }
    };
    let issued = state
        .registry
        .enroll(bearer.as_deref(), &plugin_id, ttl, &trace_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "enrollment_id": issued.id,
            "plugin_id": issued.plugin_id,
            "token": issued.token.expose(),
            "expires_at": rfc3339(issued.expires_at),
        })),
    ))
}
