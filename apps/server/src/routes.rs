//! HTTP handlers: thin translations between wire bodies and the registry.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt::Write as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vivified_domain::{HeartbeatReport, IssuedRegistration};
use vivified_ports::{Health, PluginId, PluginRecord, StoredManifest};

use crate::error::ApiError;
use crate::extract::{Bearer, JsonObject, OptionalJson};
use crate::startup::AppState;
use crate::telemetry::{TraceId, json_str};

/// RFC 3339, exactly as `time`'s `Rfc3339` writes it (fraction only when non-zero,
/// without trailing zeros), with a direct path for UTC times of years 0–9999, which
/// every time here is: `time`'s general formatter costs more than the rest of
/// `/health`'s handler.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    if !t.offset().is_utc() || !(0..=9999).contains(&t.year()) {
        return t.format(&Rfc3339).unwrap_or_default();
    }
    finish(date_time(t), t.nanosecond())
}

/// `YYYY-MM-DDTHH:MM:SS` of a UTC time of years 0–9999.
fn date_time(t: OffsetDateTime) -> [u8; 19] {
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, n: u32, width: usize| {
        let mut n = n;
        for d in out[at..at + width].iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, t.year().unsigned_abs(), 4);
    put(5, u32::from(u8::from(t.month())), 2);
    put(8, u32::from(t.day()), 2);
    put(11, u32::from(t.hour()), 2);
    put(14, u32::from(t.minute()), 2);
    put(17, u32::from(t.second()), 2);
    out
}

/// `date_time`, then `.fraction` (when `nanos` is not zero, without trailing zeros)
/// and `Z`, as one `String`.
fn finish(date_time: [u8; 19], nanos: u32) -> String {
    let mut out = [0u8; 30];
    out[..19].copy_from_slice(&date_time);
    let mut len = 19;
    if nanos != 0 {
        let (mut n, mut width) = (nanos, 9);
        while n.is_multiple_of(10) {
            n /= 10;
            width -= 1;
        }
        out[19] = b'.';
        for d in out[20..20 + width].iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        len = 20 + width;
    }
    out[len] = b'Z';
    // ASCII digits and separators only: always UTF-8.
    std::str::from_utf8(&out[..=len])
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The current time as [`rfc3339`] writes it. The date and time of day are formatted
/// once per second per thread (what a load balancer polling `/health` makes of it).
fn now_rfc3339() -> String {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since_epoch) => rfc3339_since_epoch(since_epoch),
        Err(_) => rfc3339(OffsetDateTime::now_utc()),
    }
}

/// [`rfc3339`] of the Unix epoch plus `since_epoch`, with this thread's formatted
/// second reused while the second is the same (the current time past year 9999).
fn rfc3339_since_epoch(since_epoch: std::time::Duration) -> String {
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<Option<(u64, [u8; 19])>> = const { Cell::new(None) };
    }
    let secs = since_epoch.as_secs();
    let formatted = SECOND.with(|cached| match cached.get() {
        Some((s, date_time)) if s == secs => Some(date_time),
        _ => {
            let t = i64::try_from(secs)
                .ok()
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                .filter(|t| t.year() <= 9999)?;
            let formatted = date_time(t);
            cached.set(Some((secs, formatted)));
            Some(formatted)
        }
    });
    match formatted {
        Some(date_time) => finish(date_time, since_epoch.subsec_nanos()),
        // Past what `time` represents (year 9999): as before this cache, `time`'s clock.
        None => rfc3339(OffsetDateTime::now_utc()),
    }
}

/// `GET /health`: liveness of the process; nothing sensitive, no dependency details.
/// `{"status":"healthy","timestamp":…,"version":…}`, written directly: the timestamp
/// and the version need no escaping, and this route is what load balancers poll.
pub async fn health() -> Response {
    let timestamp = now_rfc3339();
    let version = env!("CARGO_PKG_VERSION");
    let mut body = String::with_capacity(64 + timestamp.len() + version.len());
    body.push_str(r#"{"status":"healthy","timestamp":""#);
    body.push_str(&timestamp);
    body.push_str(r#"","version":""#);
    body.push_str(version);
    body.push_str(r#""}"#);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `GET /ready`: 200 when the store and the audit log answer, 503 otherwise. `audit`
/// reports the sealing lag (`pending`) and the chain's head.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => match crate::audit_routes::ready_status(&state).await {
            Ok(audit) => Json(json!({
                "status": "ready",
                "self_preservation": state.registry.self_preservation(),
                "audit": audit,
            }))
            .into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "not ready: audit log");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "status": "unavailable", "error": "unavailable", "detail": "The audit log is not answering." })),
                )
                    .into_response()
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "error": "unavailable", "detail": "The plugin store is not answering." })),
            )
                .into_response()
        }
    }
}

/// The answer to a registration or a refresh:
/// `{"status","plugin_id","token","expires_at","heartbeat_interval_secs","heartbeat_interval_ms"}`,
/// written directly (a plugin id, a token and a time need no escaping, but are
/// escaped all the same).
fn token_body(status: &str, reg: &IssuedRegistration) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        token_json(
            status,
            reg.plugin_id.as_str(),
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
    token: &str,
    expires_at: OffsetDateTime,
    heartbeat_interval: std::time::Duration,
) -> String {
    let expires_at = rfc3339(expires_at);
    let mut body = String::with_capacity(160 + token.len());
    body.push_str(r#"{"status":"#);
    let _ = json_str(&mut body, status);
    body.push_str(r#","plugin_id":"#);
    let _ = json_str(&mut body, plugin_id);
    body.push_str(r#","token":"#);
    let _ = json_str(&mut body, token);
    body.push_str(r#","expires_at":"#);
    let _ = json_str(&mut body, &expires_at);
    let _ = write!(
        body,
        r#","heartbeat_interval_secs":{},"heartbeat_interval_ms":{}}}"#,
        heartbeat_interval.as_secs().max(1),
        heartbeat_interval.as_millis()
    );
    body
}

/// `POST /plugins/register`.
pub async fn register(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    bearer: Bearer,
    JsonObject(manifest): JsonObject,
) -> Result<Response, ApiError> {
    let reg = state
        .registry
        .register_owned(manifest, bearer.as_deref(), &trace_id)
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
    if let vivified_domain::Caller::Plugin(claims) =
        state.registry.authenticate(bearer.as_deref()).await?
    {
        return Err(state
            .registry
            .refuse_plugin_on_admin_route(&claims)
            .await
            .into());
    }
    let Query(q) = query.map_err(|_| ApiError::InvalidBody("bad query string".into()))?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::InvalidBody(format!("`limit` must be between 1 and {MAX_PAGE}"))
            })?,
    };
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
    if let vivified_domain::Caller::Plugin(claims) =
        state.registry.authenticate(bearer.as_deref()).await?
    {
        return Err(state
            .registry
            .refuse_plugin_on_admin_route(&claims)
            .await
            .into());
    }
    let reason = match body?.0.reason {
        Some(Value::String(r)) if !r.trim().is_empty() && r.chars().count() <= MAX_REASON_CHARS => {
            r
        }
        _ => {
            return Err(ApiError::InvalidBody(format!(
                "`reason` must be a non-empty string of at most {MAX_REASON_CHARS} characters"
            )));
        }
    };
    let record = state
        .registry
        .disable(&id, bearer.as_deref(), &reason, &trace_id)
        .await?;
    Ok(Json(json!(PluginView::from(&record))))
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

/// The OpenAPI document (dev mode only).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Fallback for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Fallback for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_body_is_the_json_object_it_says() {
        let before = OffsetDateTime::now_utc();
        let resp = health().await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        let body: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.len(), 3, "{body:?}");
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        let at = OffsetDateTime::parse(body["timestamp"].as_str().unwrap(), &Rfc3339).unwrap();
        assert!(at >= before && at <= OffsetDateTime::now_utc(), "{at}");
    }

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
                serde_json::from_str(&token_json(status, id, token, at, interval)).unwrap();
            assert_eq!(
                body,
                json!({
                    "status": status,
                    "plugin_id": id,
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
            "t",
            at,
            std::time::Duration::from_millis(200),
        ))
        .unwrap();
        assert_eq!(body["heartbeat_interval_secs"], 1);
        assert_eq!(body["heartbeat_interval_ms"], 200);
    }

    #[test]
    fn rfc3339_matches_time() {
        let mut n: u64 = 0x2545_f491_4f6c_dd1d;
        let mut cases = vec![
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(),
            OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_100_000_000).unwrap(),
            OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_000_000_001).unwrap(),
            OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap(),
            OffsetDateTime::from_unix_timestamp(-62_167_219_200).unwrap(),
            OffsetDateTime::now_utc(),
            // Not UTC, and a year past 9999: both through `time`.
            OffsetDateTime::from_unix_timestamp(1_767_225_600)
                .unwrap()
                .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap()),
        ];
        for _ in 0..2000 {
            n = n
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let nanos = i128::from(n >> 1) * 1_000 % 253_402_300_799_000_000_000;
            let mut t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            if n.is_multiple_of(3) {
                t = t.replace_nanosecond(0).unwrap();
            } else if n % 3 == 1 {
                t = t.replace_millisecond((n % 1000) as u16).unwrap();
            }
            cases.push(t);
        }
        for t in cases {
            assert_eq!(rfc3339(t), t.format(&Rfc3339).unwrap(), "{t:?}");
        }
    }

    #[test]
    fn the_health_timestamp_is_rfc3339_of_now() {
        let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut second = 1_767_225_600;
        for i in 0..3000 {
            n = n
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Runs of the same second (the cached date reused), then a jump.
            if i % 7 == 0 {
                second = (n >> 20) % 253_402_300_800;
            }
            let nanos = match i % 4 {
                0 => 0,
                1 => ((n >> 8) % 1000) as u32 * 1_000_000,
                _ => ((n >> 3) % 1_000_000_000) as u32,
            };
            let since = std::time::Duration::new(second, nanos);
            let expected = (OffsetDateTime::UNIX_EPOCH + since)
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(rfc3339_since_epoch(since), expected, "{since:?}");
        }
        // Past year 9999, which `time` cannot represent: no panic, still RFC 3339.
        let far = rfc3339_since_epoch(std::time::Duration::new(253_402_300_800, 5));
        assert!(OffsetDateTime::parse(&far, &Rfc3339).is_ok(), "{far}");
        let now = now_rfc3339();
        let parsed = OffsetDateTime::parse(&now, &Rfc3339).unwrap();
        assert!((OffsetDateTime::now_utc() - parsed).abs() < time::Duration::seconds(5));
    }
}
