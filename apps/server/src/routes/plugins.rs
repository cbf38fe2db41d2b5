//! The plugin lifecycle: register, heartbeat, refresh, list, get, deregister, disable,
//! enable, introspect. Thin translations between wire bodies and the registry.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use vivified_domain::{HeartbeatReport, IssuedRegistration};
use vivified_ports::{Health, InstanceId, InstanceRecord, PluginId, PluginRecord, StoredManifest};

use vivified_domain::Operation;

use crate::error::ApiError;
use crate::extract::{Bearer, JsonObject, OptionalJson};
use crate::state::AppState;
use crate::telemetry::TraceId;
use crate::wire::rfc3339;

/// The answer to a registration or a refresh.
#[derive(Serialize)]
struct TokenBody<'a> {
    status: &'a str,
    plugin_id: &'a str,
    instance_id: &'a str,
    token: &'a str,
    expires_at: String,
    heartbeat_interval_secs: u64,
    heartbeat_interval_ms: u128,
}

/// `{"status","plugin_id","instance_id","token","expires_at","heartbeat_interval_secs","heartbeat_interval_ms"}`.
fn token_body(status: &str, reg: &IssuedRegistration) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        token_json(
            status,
            reg.plugin_id.as_str(),
            reg.instance_id.as_str(),
            reg.token.expose(),
            reg.expires_at,
            reg.heartbeat_interval,
        ),
    )
        .into_response()
}

fn token_json(
    status: &str,
    plugin_id: &str,
    instance_id: &str,
    token: &str,
    expires_at: OffsetDateTime,
    heartbeat_interval: std::time::Duration,
) -> String {
    let body = TokenBody {
        status,
        plugin_id,
        instance_id,
        token,
        expires_at: rfc3339(expires_at),
        heartbeat_interval_secs: heartbeat_interval.as_secs().max(1),
        heartbeat_interval_ms: heartbeat_interval.as_millis(),
    };
    // Serialising strings and integers cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// Query of `POST /plugins/register`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterQuery {
    /// The instance registering (default: the presented token's own, or `default`).
    instance: Option<String>,
}

/// `POST /plugins/register[?instance=ID]`.
pub async fn register(
    _admitted: crate::extract::Admitted,
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    query: Result<Query<RegisterQuery>, axum::extract::rejection::QueryRejection>,
    bearer: Bearer,
    JsonObject(manifest): JsonObject,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| {
        ApiError::InvalidBody("bad query string: the only parameter is `instance`".into())
    })?;
    let instance = q
        .instance
        .map(|i| InstanceId::parse(&i))
        .transpose()
        .map_err(|e| ApiError::InvalidBody(format!("`instance`: {e}")))?;
    let reg = state
        .registry
        .register_instance(manifest, instance, bearer.as_deref(), &trace_id)
        .await
        .map_err(|e| {
            tracing::info!(reason = %e, "registration refused");
            ApiError::from(e)
        })?;
    Ok(token_body("registered", &reg))
}

/// Body of `POST /plugins/{id}/heartbeat`; unknown members are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct HeartbeatBody {
    health: Option<String>,
    details: Option<Value>,
}

/// Largest `details` object accepted in a heartbeat.
pub const MAX_HEARTBEAT_DETAILS: usize = 4096;

impl HeartbeatBody {
    fn try_into_domain(self) -> Result<HeartbeatReport, ApiError> {
        let health = match self.health.as_deref() {
            None => Health::Healthy,
            Some(h @ ("healthy" | "degraded" | "unhealthy")) => {
                h.parse().unwrap_or(Health::Healthy)
            }
            Some(_) => {
                return Err(ApiError::InvalidBody(
                    "`health` must be healthy, degraded or unhealthy".into(),
                ));
            }
        };
        if let Some(details) = &self.details {
            if !details.is_object() {
                return Err(ApiError::InvalidBody("`details` must be an object".into()));
            }
            let size = serde_json::to_vec(details)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_HEARTBEAT_DETAILS {
                return Err(ApiError::InvalidBody(format!(
                    "`details` must be at most {MAX_HEARTBEAT_DETAILS} bytes"
                )));
            }
        }
        Ok(HeartbeatReport { health })
    }
}

/// `POST /plugins/{id}/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
    body: Result<OptionalJson<HeartbeatBody>, ApiError>,
) -> Result<Response, ApiError> {
    // Authenticate before looking at the body: 401/403 come before 400.
    let claims = state
        .registry
        .heartbeat_caller(&id, bearer.as_deref())
        .await?;
    let report = match body.and_then(|OptionalJson(b)| b.try_into_domain()) {
        Ok(report) => report,
        // A refused body is 400 only for a token that is still current.
        Err(e) => return Err(state.registry.refuse_heartbeat_body(&claims, e).await?),
    };
    state
        .registry
        .record_heartbeat(&claims, report, &trace_id)
        .await?;
    // A fixed body: no map to build and serialise per heartbeat.
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response())
}

/// `POST /plugins/{id}/token`.
pub async fn refresh(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
) -> Result<Response, ApiError> {
    let reg = state
        .registry
        .refresh_token(&id, bearer.as_deref(), &trace_id)
        .await?;
    Ok(token_body("refreshed", &reg))
}

/// A plugin record on the wire (no token id, no version). `status` is the liveness
/// under its original name; `liveness` says the same under its own; `next_deadline`
/// is when the plugin goes stale (or, once stale, is deregistered) without a heartbeat.
#[derive(Serialize)]
pub struct PluginView<'a> {
    plugin_id: &'a str,
    manifest: &'a StoredManifest,
    status: &'static str,
    liveness: &'static str,
    health: &'static str,
    enabled: bool,
    disabled_reason: Option<&'a str>,
    registered_at: String,
    last_heartbeat: Option<String>,
    next_deadline: Option<String>,
    approval: &'static str,
    pending_traits: Vec<String>,
    instances: Vec<InstanceView<'a>>,
}

/// One instance of a plugin on the wire (no token id).
#[derive(Serialize)]
pub struct InstanceView<'a> {
    instance_id: &'a str,
    status: &'static str,
    health: &'static str,
    registered_at: String,
    last_heartbeat: Option<String>,
    next_deadline: Option<String>,
    token_revoked: bool,
}

impl<'a> From<&'a InstanceRecord> for InstanceView<'a> {
    fn from(i: &'a InstanceRecord) -> Self {
        Self {
            instance_id: i.instance_id.as_str(),
            status: i.status.as_str(),
            health: i.health.as_str(),
            registered_at: rfc3339(i.registered_at),
            last_heartbeat: i.last_heartbeat.map(rfc3339),
            next_deadline: i.next_deadline.map(rfc3339),
            token_revoked: i.token_revoked(),
        }
    }
}

impl<'a> From<&'a PluginRecord> for PluginView<'a> {
    fn from(r: &'a PluginRecord) -> Self {
        Self {
            plugin_id: r.plugin_id.as_str(),
            manifest: &r.manifest,
            status: r.status.as_str(),
            liveness: r.status.as_str(),
            health: r.health.as_str(),
            enabled: r.enabled,
            disabled_reason: r.disabled_reason.as_deref(),
            registered_at: rfc3339(r.registered_at),
            last_heartbeat: r.last_heartbeat.map(rfc3339),
            next_deadline: r.next_deadline.map(rfc3339),
            approval: if r.pending_approval() {
                "pending"
            } else {
                "approved"
            },
            pending_traits: r.pending_traits(),
            instances: r.instances.iter().map(InstanceView::from).collect(),
        }
    }
}

/// Query of `GET /plugins`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// Default and largest page of `GET /plugins`.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page of `GET /plugins`.
pub const MAX_PAGE: usize = 1000;

/// `GET /plugins?limit=&after=` (admin).
pub async fn list(
    State(state): State<AppState>,
    bearer: Bearer,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // 401/403 before 400.
    super::authorize_first(&state, &bearer, Operation::ReadPlugins).await?;
    let Query(q) = query.map_err(|_| ApiError::InvalidBody("bad query string".into()))?;
    let limit = super::page_limit(q.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(a) => Some(
            PluginId::parse(a)
                .map_err(|_| ApiError::InvalidBody("`after` must be a plugin id".into()))?,
        ),
    };
    let records = state.registry.list(bearer.as_deref(), after, limit).await?;
    let next_after = (records.len() == limit)
        .then(|| records.last().map(|r| r.plugin_id.to_string()))
        .flatten();
    let plugins: Vec<PluginView<'_>> = records.iter().map(PluginView::from).collect();
    Ok(Json(
        json!({ "plugins": plugins, "next_after": next_after }),
    ))
}

/// `GET /plugins/{id}` (admin or the plugin itself).
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bearer: Bearer,
) -> Result<Json<Value>, ApiError> {
    let record = state.registry.get(&id, bearer.as_deref()).await?;
    Ok(Json(json!(PluginView::from(&record))))
}

/// `DELETE /plugins/{id}` (admin or the plugin itself).
pub async fn deregister(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
) -> Result<StatusCode, ApiError> {
    state
        .registry
        .deregister(&id, bearer.as_deref(), &trace_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /plugins/{id}/disable`.
#[derive(Debug, Default, Deserialize)]
pub struct DisableBody {
    reason: Option<Value>,
}

/// Longest disable reason.
pub const MAX_REASON_CHARS: usize = 500;

/// `POST /plugins/{id}/disable` (admin), body `{"reason": "…"}`.
pub async fn disable(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
    body: Result<OptionalJson<DisableBody>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    // 401/403 before 400.
    super::authorize_first(&state, &bearer, Operation::ManagePlugins).await?;
    let reason = reason_of(body?.0)?;
    let record = state
        .registry
        .disable(&id, bearer.as_deref(), &reason, &trace_id)
        .await?;
    Ok(Json(json!(PluginView::from(&record))))
}

/// `POST /plugins/{id}/approve` (admin): approves the sensitive traits the plugin
/// declares.
pub async fn approve(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .registry
        .approve(&id, bearer.as_deref(), &trace_id)
        .await?;
    Ok(Json(json!(PluginView::from(&record))))
}

/// `POST /plugins/{id}/refuse` (admin), body `{"reason": "…"}`: refuses the sensitive
/// traits the plugin waits to have approved, and disables it.
pub async fn refuse(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
    body: Result<OptionalJson<DisableBody>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    // 401/403 before 400.
    super::authorize_first(&state, &bearer, Operation::ManagePlugins).await?;
    let reason = reason_of(body?.0)?;
    let record = state
        .registry
        .refuse_approval(&id, bearer.as_deref(), &reason, &trace_id)
        .await?;
    Ok(Json(json!(PluginView::from(&record))))
}

/// The `reason` of a disable or refuse body: non-empty, at most [`MAX_REASON_CHARS`].
fn reason_of(body: DisableBody) -> Result<String, ApiError> {
    match body.reason {
        Some(Value::String(r)) if !r.trim().is_empty() && r.chars().count() <= MAX_REASON_CHARS => {
            Ok(r)
        }
        _ => Err(ApiError::InvalidBody(format!(
            "`reason` must be a non-empty string of at most {MAX_REASON_CHARS} characters"
        ))),
    }
}

/// `POST /plugins/{id}/enable` (admin).
pub async fn enable(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    Path(id): Path<String>,
    bearer: Bearer,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .registry
        .enable(&id, bearer.as_deref(), &trace_id)
        .await?;
    Ok(Json(json!(PluginView::from(&record))))
}

/// Body of `POST /tokens/introspect`.
#[derive(Debug, Default, Deserialize)]
pub struct IntrospectBody {
    token: Option<Value>,
}

/// `POST /tokens/introspect` (a plugin's own token, or admin), body `{"token": "…"}`.
/// Never reveals why a token is inactive.
pub async fn introspect(
    State(state): State<AppState>,
    bearer: Bearer,
    body: Result<OptionalJson<IntrospectBody>, ApiError>,
) -> Result<Response, ApiError> {
    // Authenticate the caller before looking at the body: 401/403 come before 400.
    if let vivified_domain::Caller::Plugin(claims) =
        state.registry.authenticate(bearer.as_deref()).await?
    {
        state.registry.require_enabled(&claims).await?;
    }
    let token = match body?.0.token {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= 8192 => t,
        _ => {
            return Err(ApiError::InvalidBody(
                "`token` must be a non-empty string".into(),
            ));
        }
    };
    let answer = state.registry.introspect(bearer.as_deref(), &token).await?;
    // Never cached by intermediaries: the answer changes when the token is revoked.
    let headers = [(header::CACHE_CONTROL, "no-store")];
    if !answer.active {
        return Ok((headers, Json(json!({ "active": false }))).into_response());
    }
    Ok((
        headers,
        Json(json!({
            "active": true,
            "plugin_id": answer.plugin_id.as_ref().map(PluginId::as_str),
            "traits": answer.traits,
            "data_classification": answer.data_classification,
            "exp": answer.expires_at.map(OffsetDateTime::unix_timestamp),
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_json_is_the_json_object_it_says() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_250_000_000).unwrap();
        let interval = std::time::Duration::from_millis(1_500);
        for (status, id, token) in [
            (
                "registered",
                "user-management",
                "eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl",
            ),
            // Never produced, but escaped all the same.
            ("re\"fresh\\ed", "a\u{1}b", "t\"o\nken"),
        ] {
            let body: Value =
                serde_json::from_str(&token_json(status, id, "pod-1", token, at, interval))
                    .unwrap();
            assert_eq!(
                body,
                json!({
                    "status": status,
                    "plugin_id": id,
                    "instance_id": "pod-1",
                    "token": token,
                    "expires_at": "2026-01-01T00:00:00.25Z",
                    "heartbeat_interval_secs": 1,
                    "heartbeat_interval_ms": 1500,
                })
            );
        }
        // A sub-second interval still says at least one second.
        let body: Value = serde_json::from_str(&token_json(
            "registered",
            "p",
            "default",
            "t",
            at,
            std::time::Duration::from_millis(200),
        ))
        .unwrap();
        assert_eq!(body["heartbeat_interval_secs"], 1);
        assert_eq!(body["heartbeat_interval_ms"], 200);
    }
}
