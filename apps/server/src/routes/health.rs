//! `GET /health` and `GET /ready`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::state::AppState;
use crate::wire::rfc3339;

/// The body of `GET /health`.
#[derive(Serialize)]
struct HealthBody {
    status: &'static str,
    timestamp: String,
    version: &'static str,
}

/// `GET /health`: liveness of the process; nothing sensitive, no dependency details.
/// `{"status":"healthy","timestamp":…,"version":…}`.
pub async fn health() -> Response {
    Json(HealthBody {
        status: "healthy",
        timestamp: rfc3339(OffsetDateTime::now_utc()),
        version: env!("CARGO_PKG_VERSION"),
    })
    .into_response()
}

/// `GET /ready`: 200 when the store and the audit log answer, 503 otherwise. `audit`
/// reports the sealing lag (`pending`) and the chain's head.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => match super::audit::ready_status(&state).await {
            Ok(audit) if audit["intact"] == false => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unavailable",
                    "error": "audit_chain_broken",
                    "detail": "The audit chain does not reach, or match, the checkpoint stored with its last seal; nothing more is sealed until it is restored.",
                    "audit": audit,
                })),
            )
                .into_response(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use serde_json::Value;
    use time::format_description::well_known::Rfc3339;

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
}
