//! The seed's user-management plugin, on the Vivified plugin SDK.
//!
//! It registers with the seed's manifest (`IdentityPlugin`, `handles_pii`,
//! `authentication_required: true`) and serves, on `PLUGIN_BIND`:
//!
//! - `GET /health` — its own liveness and its standing with the core (no credential);
//! - `GET /api/users/{id}` — a [`CanonicalUser`] from its seeded directory. The caller
//!   must send `Authorization: Bearer <its plugin token>`; the plugin asks the core
//!   about that token (`POST /tokens/introspect`, answers cached briefly) and serves
//!   the user only to an active caller whose manifest declares `handles_pii`:
//!   401 without a token or with one that is not active (forged, expired, replaced,
//!   deregistered, disabled), 403 for a caller without `handles_pii`, 503 when the
//!   core cannot be asked, 404 for an unknown id.
//!
//! No PII is logged: log lines carry the caller's plugin id and the outcome, never a
//! user id, name or address, and never a token.

pub mod users;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use vivified_plugin_sdk::{
    AuditLevel, AuthError, CanonicalUser, Contract, DataClass, FindUsersError, GetUserError,
    HealthReport, IdentityPlugin, InitializeError, Manifest, Plugin, PluginContext, PluginStatus,
    PluginTrait, ShutdownError, TokenIntrospector, UserQuery, async_trait,
};

use crate::users::UserStore;

/// The plugin's id.
pub const PLUGIN_ID: &str = "user-management";

/// `PLUGIN_BIND`'s default.
pub const DEFAULT_BIND: &str = "127.0.0.1:8001";

/// The seed's manifest (`schemas/examples/user-management.json`).
pub fn manifest() -> Manifest {
    Manifest::builder(PLUGIN_ID, "User Management Plugin", "1.0.0")
        .description("Manages user profiles and extended attributes")
        .contract(Contract::IdentityPlugin)
        .traits([PluginTrait::HandlesPii, PluginTrait::AuditRequired])
        .endpoint("health", "/health")
        .endpoint("user_info", "/api/users/{id}")
        .authentication_required(true)
        .data_classification([DataClass::Pii, DataClass::Internal])
        .hipaa_controls(["164.312(a)", "164.312(d)"])
        .audit_level(AuditLevel::Detailed)
        .build()
        .expect("the seed's manifest is valid")
}

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The plugin: its directory and its HTTP server.
pub struct UserManagement {
    bind: String,
    users: Arc<UserStore>,
    server: Mutex<Option<Server>>,
    local_addr: OnceLock<SocketAddr>,
}

impl UserManagement {
    /// The plugin listening on `bind` (`IP:PORT`; port 0 picks a free port), with the
    /// seeded directory.
    pub fn new(bind: impl Into<String>) -> Self {
        Self {
            bind: bind.into(),
            users: Arc::new(UserStore::seeded()),
            server: Mutex::new(None),
            local_addr: OnceLock::new(),
        }
    }

    /// Listens on `PLUGIN_BIND` (default `127.0.0.1:8001`); checked at initialization.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("PLUGIN_BIND")
                .ok()
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_BIND.to_owned()),
        )
    }

    /// The address the HTTP server listens on, once initialized.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }
}

#[derive(Clone)]
struct AppState {
    users: Arc<UserStore>,
    introspector: TokenIntrospector,
    status: watch::Receiver<PluginStatus>,
}

/// The plugin's HTTP API.
fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/api/users/{id}", get(get_user))
        .with_state(state)
}

fn core_status(s: &PluginStatus) -> &'static str {
    match s {
        PluginStatus::Starting => "starting",
        PluginStatus::Connecting { .. } => "connecting",
        PluginStatus::Registered { .. } => "registered",
        PluginStatus::CoreUnavailable { .. } => "core_unavailable",
        PluginStatus::Disabled => "disabled",
        PluginStatus::Refused(_) => "refused",
        PluginStatus::Stopping => "stopping",
        PluginStatus::Stopped => "stopped",
    }
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let status = state.status.borrow().clone();
    Json(json!({
        "status": "healthy",
        "plugin_id": PLUGIN_ID,
        "core": core_status(&status),
        "registered": status.is_registered(),
    }))
}

fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    (status, Json(json!({ "error": code, "detail": detail }))).into_response()
}

async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match state
        .introspector
        .authorize(authorization, &[PluginTrait::HandlesPii])
        .await
    {
        Ok(caller) => caller,
        Err(e) => {
            tracing::info!(status = e.status(), reason = %e, "user lookup refused");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut resp = match &e {
                AuthError::MissingToken => error(status, e.code(), "Send `Authorization: Bearer <plugin token>`."),
                AuthError::InactiveToken => error(status, e.code(), "The token is not active."),
                AuthError::MissingTrait(t) => (
                    status,
                    Json(json!({
                        "error": e.code(),
                        "reason": "missing_trait",
                        "trait": t.as_str(),
                        "detail": "The calling plugin does not declare the trait needed for this data.",
                    })),
                )
                    .into_response(),
                AuthError::Unavailable(_) => error(status, e.code(), "The token cannot be checked right now; retry later."),
            };
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"user-management\""),
                );
            }
            return resp;
        }
    };
    let caller_id = caller.plugin_id.as_deref().unwrap_or("unknown");
    let mut resp = match state.users.get(&id) {
        Ok(user) => {
            tracing::info!(caller = %caller_id, "user served");
            Json(user).into_response()
        }
        Err(GetUserError::NotFound) => {
            tracing::info!(caller = %caller_id, "user not found");
            error(StatusCode::NOT_FOUND, "not_found", "No such user.")
        }
        Err(GetUserError::Unavailable(e)) => {
            tracing::warn!(caller = %caller_id, error = %e, "user directory unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Retry later.",
            )
        }
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[async_trait]
impl Plugin for UserManagement {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    async fn initialize(&self, ctx: PluginContext) -> Result<(), InitializeError> {
        let addr: SocketAddr = self.bind.trim().parse().map_err(|_| {
            InitializeError::Config("PLUGIN_BIND: expected IP:PORT, e.g. 127.0.0.1:8001".into())
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| InitializeError::Io {
                what: format!("PLUGIN_BIND: cannot listen on {addr}"),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| InitializeError::Io {
                what: "PLUGIN_BIND: no local address".into(),
                source,
            })?;
        let _ = self.local_addr.set(local);
        let app = router(AppState {
            users: self.users.clone(),
            introspector: ctx.introspector().clone(),
            status: ctx.status(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(Server { stop, task });
        tracing::info!(plugin_id = PLUGIN_ID, addr = %local, "user-management API listening");
        Ok(())
    }

    async fn health_check(&self) -> HealthReport {
        let serving = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|s| !s.task.is_finished());
        if serving {
            HealthReport::healthy()
        } else {
            HealthReport::unhealthy().with_detail("api", "not serving")
        }
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(server) = server else {
            return Ok(());
        };
        let _ = server.stop.send(());
        let limit = Duration::from_secs(5);
        match tokio::time::timeout(limit, server.task).await {
            Ok(Ok(Ok(()))) => {
                tracing::info!(plugin_id = PLUGIN_ID, "user-management API stopped");
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(ShutdownError::Other(Box::new(e))),
            Ok(Err(e)) => Err(ShutdownError::Other(Box::new(e))),
            Err(_) => Err(ShutdownError::Timeout(limit)),
        }
    }
}

#[async_trait]
impl IdentityPlugin for UserManagement {
    async fn get_user(&self, id: &str) -> Result<CanonicalUser, GetUserError> {
        self.users.get(id)
    }

    async fn find_users(&self, query: &UserQuery) -> Result<Vec<CanonicalUser>, FindUsersError> {
        self.users.find(query)
    }
}
