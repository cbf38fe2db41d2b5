//! Enrollments (admin): `POST /enrollments` mints a one-time enrollment token for one
//! plugin id; `GET /enrollments` lists them (never a token); `DELETE
//! /enrollments/{id}` cancels an unused one.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use vivified_domain::Operation;

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
    /// Absent: the default; `null` is refused like any other non-string.
    #[serde(default, deserialize_with = "crate::wire::present")]
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
    super::authorize_first(&state, &bearer, Operation::Enroll).await?;
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

/// Query of `GET /enrollments`; an unknown parameter is 400.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    plugin_id: Option<String>,
    limit: Option<String>,
}

/// Default page of `GET /enrollments`.
pub const DEFAULT_PAGE: usize = 100;

/// An enrollment as the API shows it: never its token (nor the token's hash).
fn view(e: &vivified_ports::Enrollment, now: time::OffsetDateTime) -> Value {
    let state = if e.used_at.is_some() {
        "used"
    } else if now >= e.expires_at {
        "expired"
    } else {
        "pending"
    };
    json!({
        "enrollment_id": e.id,
        "plugin_id": e.plugin_id,
        "state": state,
        "created_at": rfc3339(e.created_at),
        "expires_at": rfc3339(e.expires_at),
        "created_by": e.created_by,
        "used_at": e.used_at.map(rfc3339),
    })
}

/// `GET /enrollments?plugin_id=…&limit=N` (admin) → `{"enrollments": [...]}`, newest
/// first, each with its `state` (`pending`, `used`, `expired`).
pub async fn list(
    State(state): State<AppState>,
    bearer: Bearer,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // 401/403 before 400.
    super::authorize_first(&state, &bearer, Operation::Enroll).await?;
    let Query(q) = query.map_err(|_| ApiError::InvalidBody("bad query string".into()))?;
    let limit = super::page_limit(
        q.limit.as_deref(),
        DEFAULT_PAGE,
        vivified_domain::registry::MAX_ENROLLMENT_PAGE,
    )?;
    let plugin_id = q.plugin_id.as_deref().filter(|p| !p.is_empty());
    let found = state
        .registry
        .list_enrollments(bearer.as_deref(), plugin_id, limit)
        .await?;
    let now = state.registry.now();
    let enrollments: Vec<Value> = found.iter().map(|e| view(e, now)).collect();
    Ok(Json(json!({ "enrollments": enrollments })))
}

/// `DELETE /enrollments/{id}` (admin): cancels the unused enrollment; 200 with it as
/// it was (`state` `cancelled`), 404 if there is none, 409 `conflict`
/// (`enrollment_used`) if it was used.
pub async fn cancel(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
) -> Result<Json<Value>, ApiError> {
    let cancelled = state
        .registry
        .cancel_enrollment(bearer.as_deref(), &id, &trace_id)
        .await?;
    let mut answer = view(&cancelled, state.registry.now());
    answer["state"] = json!("cancelled");
    Ok(Json(answer))
}
