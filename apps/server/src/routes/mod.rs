//! The HTTP API: the router and its handlers, one module per resource. Handlers are
//! thin translations between wire bodies and the domain services in [`AppState`].

pub mod access;
pub mod audit;
pub mod enrollments;
pub mod events;
pub mod health;
pub mod operators;
pub mod plugins;
pub mod tokens;

use std::time::Duration;

use axum::Router;
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use vivified_domain::Mode;
use vivified_domain::Operation;

use self::access::{Access, RouteAccess};
use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::AppState;
use crate::telemetry;

/// 401/403 come before 400: a caller who may not perform `operation` gets its refusal
/// before the body is read.
pub(crate) async fn authorize_first(
    state: &AppState,
    bearer: &crate::extract::Bearer,
    operation: vivified_domain::Operation,
) -> Result<(), ApiError> {
    state
        .registry
        .authorize(bearer.as_deref(), operation)
        .await
        .map(drop)
        .map_err(Into::into)
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

type Entry = (RouteAccess, MethodRouter<AppState>);

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Entry
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let methods = match method {
        Method::GET => get(handler),
        Method::DELETE => delete(handler),
        _ => post(handler),
    };
    (
        RouteAccess {
            method,
            path,
            access,
        },
        methods,
    )
}

/// Every route with who may call it, and its handler.
fn entries(settings: &Settings) -> Vec<Entry> {
    use Access::{Anyone, Operator, Plugin, PluginOr, Public, Registration, SelfOr};
    use Operation::{
        ApproveTraits, BreakGlass, Enroll, ManageOperators, ManagePlugins, ReadAudit,
        ReadOperators, ReadPlugins, RevokeAllTokens,
    };
    let (g, p, d) = (Method::GET, Method::POST, Method::DELETE);
    let mut routes = vec![
        route(g.clone(), "/health", Public, health::health),
        route(g.clone(), "/ready", Public, health::ready),
        route(g.clone(), "/.well-known/jwks.json", Public, tokens::jwks),
        route(g.clone(), "/whoami", Anyone, operators::whoami),
        route(g.clone(), "/plugins", Operator(ReadPlugins), plugins::list),
        route(
            p.clone(),
            "/plugins/register",
            Registration,
            plugins::register,
        ),
        route(
            p.clone(),
            "/enrollments",
            Operator(Enroll),
            enrollments::create,
        ),
        route(
            g.clone(),
            "/enrollments",
            Operator(Enroll),
            enrollments::list,
        ),
        route(
            d.clone(),
            "/enrollments/{id}",
            Operator(Enroll),
            enrollments::cancel,
        ),
        route(
            g.clone(),
            "/plugins/{id}",
            PluginOr(ReadPlugins),
            plugins::get,
        ),
        route(
            d.clone(),
            "/plugins/{id}",
            PluginOr(ManagePlugins),
            plugins::deregister,
        ),
        route(
            p.clone(),
            "/plugins/{id}/heartbeat",
            Plugin,
            plugins::heartbeat,
        ),
        route(p.clone(), "/plugins/{id}/token", Plugin, plugins::refresh),
        route(
            p.clone(),
            "/plugins/{id}/disable",
            Operator(ManagePlugins),
            plugins::disable,
        ),
        route(
            p.clone(),
            "/plugins/{id}/enable",
            Operator(ManagePlugins),
            plugins::enable,
        ),
        route(
            p.clone(),
            "/plugins/{id}/approve",
            Operator(ApproveTraits),
            plugins::approve,
        ),
        route(
            p.clone(),
            "/plugins/{id}/refuse",
            Operator(ManagePlugins),
            plugins::refuse,
        ),
        route(
            p.clone(),
            "/plugins/{id}/revoke-before",
            Operator(ManagePlugins),
            tokens::revoke_plugin,
        ),
        route(
            p.clone(),
            "/tokens/introspect",
            PluginOr(ReadPlugins),
            plugins::introspect,
        ),
        route(
            p.clone(),
            "/tokens/revoke-before",
            Operator(RevokeAllTokens),
            tokens::revoke_all,
        ),
        route(p.clone(), "/events", Plugin, events::publish),
        // The original Python core's path, for plugins written for it: the same
        // handler, so the same authentication, policy, sanitising, audit and answer.
        route(p.clone(), "/messaging/events", Plugin, events::publish),
        route(g.clone(), telemetry::LONG_POLL_ROUTE, Plugin, events::pull),
        route(g.clone(), "/audit", Operator(ReadAudit), audit::list),
        route(
            g.clone(),
            "/audit/verify",
            Operator(ReadAudit),
            audit::verify,
        ),
        route(
            g.clone(),
            "/audit/export",
            Operator(ReadAudit),
            audit::export,
        ),
        route(
            p.clone(),
            "/operators",
            Operator(ManageOperators),
            operators::create,
        ),
        route(
            g.clone(),
            "/operators",
            Operator(ReadOperators),
            operators::list,
        ),
        route(
            g.clone(),
            "/operators/{name}",
            SelfOr(ReadOperators),
            operators::get,
        ),
        route(
            d.clone(),
            "/operators/{name}",
            Operator(ManageOperators),
            operators::delete,
        ),
        route(
            p.clone(),
            "/operators/{name}/tokens",
            SelfOr(ManageOperators),
            operators::create_token,
        ),
        route(
            d.clone(),
            "/operators/{name}/tokens/{prefix}",
            SelfOr(ManageOperators),
            operators::revoke_token,
        ),
        route(
            p.clone(),
            "/break-glass",
            Operator(BreakGlass),
            operators::break_glass,
        ),
        route(
            d,
            "/break-glass",
            Operator(BreakGlass),
            operators::end_break_glass,
        ),
    ];
    if settings.mode == Mode::Dev {
        routes.push(route(g.clone(), "/openapi.json", Public, openapi));
    }
    if settings.metrics_bind.is_none() {
        routes.push(route(g, "/metrics", Public, crate::metrics::render));
    }
    routes
}

/// Every route of the router `settings` build, with who may call it.
#[must_use]
pub fn route_table(settings: &Settings) -> Vec<RouteAccess> {
    entries(settings).into_iter().map(|(r, _)| r).collect()
}

/// The HTTP API over `state`. Tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState, settings: &Settings) -> App {
    let routes = entries(settings);
    // Install the recorder before the first request records anything.
    crate::metrics::handle();
    // The trace layer labels requests with the same templates the router routes by.
    let templates: Vec<&'static str> = routes.iter().map(|(r, _)| r.path).collect();
    // Several methods of one path are merged into one method router.
    let mut app = routes
        .into_iter()
        .fold(Router::new(), |api, (r, methods)| {
            api.route(r.path, methods)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::lockout::lock_out,
        ))
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
