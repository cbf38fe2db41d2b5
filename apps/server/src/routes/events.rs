//! `POST /events` and `GET /plugins/{id}/events`: events between plugins through the
//! core (the policy decides per subscriber; see `vivified_domain::broker`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;
use vivified_domain::broker::{BrokerError, PublishRequest};
use vivified_ports::Cursor;

use crate::error::ApiError;
use crate::extract::{Bearer, JsonObject};
use crate::state::AppState;
use crate::telemetry::TraceId;

/// Most events one pull returns.
pub const MAX_PULL_LIMIT: usize = 1000;

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Registry(e) => e.into(),
            BrokerError::InvalidEvent(why) => Self::InvalidBody(why),
            BrokerError::InvalidCursor => {
                Self::InvalidBody("`after` is not a cursor this core issued".into())
            }
            BrokerError::PolicyDenied { rule, reason } => Self::PolicyDenied { rule, reason },
        }
    }
}

/// Reads the JSON form of a `CanonicalEvent` a publisher sends. The core sets
/// `event_id`, `trace_id`, `timestamp` and `source_plugin`; values sent for the first
/// three are ignored. Every error names its member (never echoes a value).
fn parse_event(body: Value) -> Result<PublishRequest, ApiError> {
    fn field<T: serde::de::DeserializeOwned>(
        obj: &mut Map<String, Value>,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        match obj.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|_| ApiError::InvalidBody(format!("`{name}` must be {what}"))),
        }
    }
    let Value::Object(mut obj) = body else {
        return Err(ApiError::InvalidBody(
            "the body must be a JSON object".into(),
        ));
    };
    let event_type: String = field(&mut obj, "event_type", "a string")?
        .ok_or_else(|| ApiError::InvalidBody("`event_type` is required".into()))?;
    let payload: Map<String, Value> =
        field(&mut obj, "payload", "a JSON object")?.unwrap_or_default();
    let data_traits: Vec<String> =
        field(&mut obj, "data_traits", "an array of strings")?.unwrap_or_default();
    let metadata: BTreeMap<String, String> =
        field(&mut obj, "metadata", "an object of strings")?.unwrap_or_default();
    let source_plugin: Option<String> = field(&mut obj, "source_plugin", "a string")?;
    for ignored in ["event_id", "trace_id", "timestamp"] {
        obj.remove(ignored);
    }
    if let Some(unknown) = obj.keys().next() {
        let name: String = unknown.chars().take(64).collect();
        return Err(ApiError::InvalidBody(format!("unknown member `{name}`")));
    }
    Ok(PublishRequest {
        event_type,
        payload,
        data_traits,
        metadata,
        source_plugin,
    })
}

/// `POST /events`, and its alias `POST /messaging/events` (the original Python core's
/// path), with a plugin's own token: `202 {"event_id", "trace_id", "delivered",
/// "sanitized", "denied"}`.
pub async fn publish(
    State(state): State<AppState>,
    TraceId(trace_id): TraceId,
    bearer: Bearer,
    body: Result<JsonObject, ApiError>,
) -> Result<Response, ApiError> {
    // 401/403 before 400.
    let body = match body {
        Ok(JsonObject(v)) => v,
        Err(e) => {
            state.broker.plugin_caller(bearer.as_deref()).await?;
            return Err(e);
        }
    };
    let request = match parse_event(body) {
        Ok(r) => r,
        Err(e) => {
            state.broker.plugin_caller(bearer.as_deref()).await?;
            return Err(e);
        }
    };
    let receipt = state
        .broker
        .publish(bearer.as_deref(), request, &trace_id)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(receipt))).into_response())
}

/// Query of `GET /plugins/{id}/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullQuery {
    after: Option<String>,
    wait: Option<String>,
    limit: Option<usize>,
}

/// `GET /plugins/{id}/events?after=CURSOR&wait=DURATION&limit=N` (the plugin's own
/// token): a long poll answering `{"events", "next_cursor", "dropped"}`. `after`
/// acknowledges every event up to it; `wait` (humantime, default 0) is capped at
/// `VIVIFIED_EVENTS_MAX_WAIT`; `limit` defaults to 100, at most 1000.
pub async fn pull(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bearer: Bearer,
    query: Result<Query<PullQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let parsed = query
        .map_err(|_| {
            ApiError::InvalidBody("the query takes `after`, `wait` and `limit` only".into())
        })
        .and_then(|Query(q)| {
            let wait = match q.wait.as_deref() {
                None => Duration::ZERO,
                Some(w) => humantime::parse_duration(w.trim()).map_err(|_| {
                    ApiError::InvalidBody("`wait` must be a duration like `20s`".into())
                })?,
            };
            let limit = q.limit.unwrap_or(100);
            if !(1..=MAX_PULL_LIMIT).contains(&limit) {
                return Err(ApiError::InvalidBody(format!(
                    "`limit` must be between 1 and {MAX_PULL_LIMIT}"
                )));
            }
            let after = match q.after {
                Some(a) if a.is_empty() || a.len() > Cursor::MAX_LEN => {
                    return Err(ApiError::InvalidBody(
                        "`after` is not a cursor this core issued".into(),
                    ));
                }
                a => a.map(Cursor::new),
            };
            Ok((after, wait.min(state.events_max_wait), limit))
        });
    let (after, wait, limit) = match parsed {
        Ok(p) => p,
        Err(e) => {
            state.broker.plugin_caller(bearer.as_deref()).await?;
            return Err(e);
        }
    };
    let pulled = state
        .broker
        .pull(&id, bearer.as_deref(), after.as_ref(), limit, wait)
        .await?;
    let events: Vec<Value> = pulled
        .events
        .into_iter()
        .map(|(cursor, e)| {
            json!({
                "cursor": cursor,
                "event_id": e.event_id,
                "trace_id": e.trace_id,
                "event_type": e.event_type,
                "timestamp": e.at.format(&Rfc3339).unwrap_or_default(),
                "source_plugin": e.source,
                "data_traits": e.data_traits,
                "payload": e.payload,
                "metadata": e.metadata,
            })
        })
        .collect();
    Ok(Json(json!({
        "events": events,
        "next_cursor": pulled.next_cursor,
        "dropped": pulled.dropped,
    })))
}
