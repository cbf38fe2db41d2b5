//! Operators as named people: `POST /operators` creates one (admin), `GET /operators`
//! and `GET /operators/{name}` read them, `DELETE /operators/{name}` removes one and
//! its tokens, `POST /operators/{name}/tokens` creates an API token (shown once) and
//! `DELETE /operators/{name}/tokens/{prefix}` revokes one; `GET /whoami` tells any
//! caller who it is. A token's hash is never answered.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vivified_domain::{Caller, Operation};
use vivified_ports::{Operator, OperatorToken};

use crate::error::ApiError;
use crate::extract::{Bearer, OptionalJson};
use crate::state::AppState;
use crate::telemetry::TraceId;
use crate::wire::rfc3339;

/// Default page of `GET /operators`.
pub const DEFAULT_PAGE: usize = 100;

fn operator_view(o: &Operator) -> Value {
    json!({
        "name": o.name.as_str(),
        "role": o.role.as_str(),
        "created_at": rfc3339(o.created_at),
        "created_by": o.created_by,
        "expires_at": o.expires_at.map(rfc3339),
    })
}

/// A token as the API shows it: its public prefix, label and times; never the token
/// nor its hash.
fn token_view(t: &OperatorToken, now: OffsetDateTime) -> Value {
    json!({
        "prefix": t.prefix,
        "label": t.label,
        "created_at": rfc3339(t.created_at),
        "expires_at": rfc3339(t.expires_at),
        "expired": now >= t.expires_at,
    })
}

/// Body of `POST /operators`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: Option<Value>,
    role: Option<Value>,
    #[serde(default, deserialize_with = "crate::wire::present")]
    expires_at: Option<Value>,
}

fn string_member(v: Option<Value>, what: &'static str) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) => Ok(s),
        _ => Err(ApiError::InvalidBody(what.into())),
    }
}

/// `POST /operators` (admin), body `{"name", "role", "expires_at"?}` → 201 with the
/// operator.
pub async fn create(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    bearer: Bearer,
    body: Result<OptionalJson<CreateBody>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::authorize_first(&state, &bearer, Operation::ManageOperators).await?;
    let body = body?.0;
    let name = string_member(body.name, "`name` is required: the operator's name")?;
    let role = string_member(
        body.role,
        "`role` is required: one of viewer, auditor, operator, admin",
    )?;
    let expires_at =
        match body.expires_at {
            None => None,
            Some(Value::String(s)) => Some(OffsetDateTime::parse(&s, &Rfc3339).map_err(|_| {
                ApiError::InvalidBody("`expires_at` must be an RFC 3339 time".into())
            })?),
            Some(_) => {
                return Err(ApiError::InvalidBody(
                    "`expires_at` must be an RFC 3339 time".into(),
                ));
            }
        };
    let operator = state
        .registry
        .create_operator(bearer.as_deref(), &name, &role, expires_at, &trace_id)
        .await?;
    Ok((StatusCode::CREATED, Json(operator_view(&operator))))
}

/// Query of `GET /operators`; an unknown parameter is 400.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /operators?after=NAME&limit=N` (auditor and up) → `{"operators": [...]}` sorted
/// by name.
pub async fn list(
    State(state): State<AppState>,
    bearer: Bearer,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    super::authorize_first(&state, &bearer, Operation::ReadOperators).await?;
    let Query(q) = query.map_err(|_| ApiError::InvalidBody("bad query string".into()))?;
    let limit = super::page_limit(
        q.limit.as_deref(),
        DEFAULT_PAGE,
        vivified_domain::registry::MAX_OPERATOR_PAGE,
    )?;
    let found = state
        .registry
        .list_operators(bearer.as_deref(), q.after.as_deref(), limit)
        .await?;
    let operators: Vec<Value> = found.iter().map(operator_view).collect();
    Ok(Json(json!({ "operators": operators })))
}

/// `GET /operators/{name}` (auditor and up, or the operator itself) → the operator
/// with its `tokens` (prefixes, labels, times).
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bearer: Bearer,
) -> Result<Json<Value>, ApiError> {
    let details = state.registry.operator(bearer.as_deref(), &name).await?;
    let now = state.registry.now();
    let mut answer = operator_view(&details.operator);
    answer["tokens"] = details.tokens.iter().map(|t| token_view(t, now)).collect();
    Ok(Json(answer))
}

/// `DELETE /operators/{name}` (admin) → 204; its tokens stop working at once.
pub async fn delete(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(name): Path<String>,
    bearer: Bearer,
) -> Result<StatusCode, ApiError> {
    state
        .registry
        .delete_operator(bearer.as_deref(), &name, &trace_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /operators/{name}/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    #[serde(default, deserialize_with = "crate::wire::present")]
    label: Option<Value>,
    #[serde(default, deserialize_with = "crate::wire::present")]
    ttl: Option<Value>,
}

const TTL_RULE: &str = "`ttl` must be a duration between 1s and 366d, e.g. \"90d\"";

/// `POST /operators/{name}/tokens` (admin, or the operator itself), body
/// `{"label"?, "ttl"?}` → 201 `{"token", "prefix", "label", "expires_at"}`. The
/// token is shown this once.
pub async fn create_token(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(name): Path<String>,
    bearer: Bearer,
    body: Result<OptionalJson<TokenBody>, ApiError>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<Value>,
    ),
    ApiError,
> {
    // 401/403 before 400: the same check the registry makes, made first.
    if let Caller::Plugin(claims) = state.registry.authenticate(bearer.as_deref()).await? {
        return Err(state
            .registry
            .refuse_plugin_on_admin_route(&claims)
            .await
            .into());
    }
    let body = body?.0;
    let label = match body.label {
        None => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::InvalidBody("`label` must be a string".into())),
    };
    let ttl = match body.ttl {
        None => None,
        Some(Value::String(s)) => Some(
            humantime::parse_duration(s.trim())
                .map_err(|_| ApiError::InvalidBody(TTL_RULE.into()))?,
        ),
        Some(_) => return Err(ApiError::InvalidBody(TTL_RULE.into())),
    };
    let issued = state
        .registry
        .create_operator_token(bearer.as_deref(), &name, &label, ttl, &trace_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token": issued.token.expose(),
            "prefix": issued.prefix,
            "label": issued.label,
            "expires_at": rfc3339(issued.expires_at),
        })),
    ))
}

/// `DELETE /operators/{name}/tokens/{prefix}` (admin, or the operator itself) → 204.
pub async fn revoke_token(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path((name, prefix)): Path<(String, String)>,
    bearer: Bearer,
) -> Result<StatusCode, ApiError> {
    state
        .registry
        .revoke_operator_token(bearer.as_deref(), &name, &prefix, &trace_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /whoami` (any principal) → `{"name", "kind", "role", "auth", "credential",
/// "expires_at"}` for an operator, `{"name", "kind": "plugin", "expires_at"}` for a
/// plugin.
pub async fn whoami(
    State(state): State<AppState>,
    bearer: Bearer,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        match state.registry.whoami(bearer.as_deref()).await? {
            Caller::Operator(p) => json!({
                "name": p.name,
                "kind": "operator",
                "role": p.role.as_str(),
                "auth": p.auth.as_str(),
                "credential": p.credential,
                "expires_at": p.expires_at.map(rfc3339),
            }),
            Caller::Plugin(claims) => json!({
                "name": claims.plugin_id,
                "kind": "plugin",
                "expires_at": rfc3339(claims.expires_at),
            }),
        },
    ))
}

/// Body of `POST /break-glass`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassBody {
    reason: Option<Value>,
    duration: Option<Value>,
}

const DURATION_RULE: &str = "`duration` must be between 1s and 4h, e.g. \"30m\"";

/// `POST /break-glass` (an operator with the operator role, if `VIVIFIED_BREAK_GLASS`),
/// body `{"reason", "duration"}` → 201 `{"operator", "role": "admin", "until"}`.
pub async fn break_glass(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    bearer: Bearer,
    body: Result<OptionalJson<BreakGlassBody>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state
        .registry
        .authorize(bearer.as_deref(), Operation::BreakGlass)
        .await?;
    let body = body?.0;
    let reason = string_member(
        body.reason,
        "`reason` is required: why, in 10 to 1000 characters",
    )?;
    let duration = match body.duration {
        Some(Value::String(s)) => humantime::parse_duration(s.trim())
            .map_err(|_| ApiError::InvalidBody(DURATION_RULE.into()))?,
        _ => return Err(ApiError::InvalidBody(DURATION_RULE.into())),
    };
    let grant = state
        .registry
        .break_glass(bearer.as_deref(), &reason, duration, &trace_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "operator": principal.name,
            "role": "admin",
            "until": rfc3339(grant.until),
        })),
    ))
}

/// `DELETE /break-glass`: ends the caller's elevation → 204.
pub async fn end_break_glass(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    bearer: Bearer,
) -> Result<StatusCode, ApiError> {
    state
        .registry
        .end_break_glass(bearer.as_deref(), &trace_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
