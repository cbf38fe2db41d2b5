//! The HTTP API: the router and its handlers, one module per resource. Handlers are
//! thin translations between wire bodies and the domain services in [`AppState`].

pub mod audit;
pub mod enrollments;
pub mod events;
pub mod health;
pub mod plugins;
pub mod tokens;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use vivified_domain::Mode;

use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::AppState;
use crate::telemetry;

/// 401/403 come before 400: a plugin token gets its refusal before the body is read.
pub(crate) async fn admin_first(
    state: &AppState,
    bearer: &crate::extract::Bearer,
) -> Result<(), ApiError> {
    if let vivified_domain::Caller::Plugin(claims) =
        state.registry.authenticate(bearer.as_deref()).await?
    {
        return Err(state
            .registry
            .refuse_plugin_on_admin_route(&claims)
            .await
            .into());
    }
    Ok(())
}

/// A `limit` query parameter: `default` when absent, else 1 to `max`.
fn page_limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| ApiError::InvalidBody(format!("`limit` must be between 1 and {max}"))),
    }
}

/// The HTTP API over `state`. Tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState, settings: &Settings) -> App {
    let mut routes: Vec<(&'static str, MethodRouter<AppState>)> = vec![
        ("/health", get(health::health)),
        ("/ready", get(health::ready)),
        ("/.well-known/jwks.json", get(tokens::jwks)),
        ("/plugins", get(plugins::list)),
        ("/plugins/register", post(plugins::register)),
        (
            "/enrollments",
            post(enrollments::create).get(enrollments::list),
        ),
        ("/enrollments/{id}", delete(enrollments::cancel)),
        (
            "/plugins/{id}",
            get(plugins::get).delete(plugins::deregister),
        ),
        ("/plugins/{id}/heartbeat", post(plugins::heartbeat)),
        ("/plugins/{id}/token", post(plugins::refresh)),
        ("/plugins/{id}/disable", post(plugins::disable)),
        ("/plugins/{id}/enable", post(plugins::enable)),
        ("/plugins/{id}/approve", post(plugins::approve)),
        ("/plugins/{id}/refuse", post(plugins::refuse)),
        ("/plugins/{id}/revoke-before", post(tokens::revoke_plugin)),
        ("/tokens/introspect", post(plugins::introspect)),
        ("/tokens/revoke-before", post(tokens::revoke_all)),
        ("/events", post(events::publish)),
        // The original Python core's path, for plugins written for it: the same
        // handler, so the same authentication, policy, sanitising, audit and answer.
        ("/messaging/events", post(events::publish)),
        (telemetry::LONG_POLL_ROUTE, get(events::pull)),
        ("/audit", get(audit::list)),
        ("/audit/verify", get(audit::verify)),
        ("/audit/export", get(audit::export)),
    ];
    if settings.mode == Mode::Dev {
        routes.push(("/openapi.json", get(openapi)));
    }
    // Install the recorder before the first request records anything.
    crate::metrics::handle();
    if settings.metrics_bind.is_none() {
        routes.push(("/metrics", get(crate::metrics::render)));
    }
    // The trace layer labels requests with the same templates the router routes by.
    let templates: Vec<&'static str> = routes.iter().map(|(t, _)| *t).collect();
    let mut app = routes
        .into_iter()
        .fold(Router::new(), |api, (template, methods)| {
            api.route(template, methods)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    if !settings.allowed_origins.is_empty() {
        let origins: Vec<HeaderValue> = settings
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    telemetry::X_REQUEST_ID.clone(),
                ])
                .expose_headers([telemetry::X_REQUEST_ID.clone()])
                .allow_credentials(true)
                .max_age(Duration::from_secs(600)),
        );
    }
    tower::Layer::layer(
        &telemetry::TraceLayer::new(
            telemetry::Bounds {
                request: settings.request_timeout,
                long_poll: settings.events_max_wait,
                max_header_bytes: settings.max_header_bytes,
            },
            &templates,
        ),
        app,
    )
}

/// The HTTP API as one service: the router inside the trace layer.
pub type App = telemetry::Traced<Router>;

/// The OpenAPI document (dev mode only).
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

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
