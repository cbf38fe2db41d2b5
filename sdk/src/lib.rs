//! Write a Vivified plugin.
//!
//! - [`Plugin`] and the contract traits [`CommunicationPlugin`], [`StoragePlugin`] and
//!   [`IdentityPlugin`], each operation with its own `thiserror` error type;
//! - [`Manifest`], a typed manifest that serialises to exactly what the core's
//!   `schemas/manifest.schema.json` accepts, built and checked by [`Manifest::builder`];
//! - [`Runner`], which registers the plugin with the core and keeps it registered:
//!   retries with capped exponential backoff and jitter while the core is not up,
//!   sends the token it holds (kept on disk with mode 0600 when [`Config::token_file`]
//!   is set, so a restart re-registers instead of hitting 409), heartbeats at the
//!   interval the core returned with the plugin's [`Plugin::health_check`], refreshes
//!   the token before it expires, re-registers on 401/404, keeps running and backs off
//!   on 403 `plugin_disabled` (reported as [`PluginStatus::Disabled`]), and optionally
//!   deregisters on shutdown. Every request has a timeout; the token is never logged;
//! - events between plugins through the core: [`CoreClient::publish`] and
//!   [`CoreClient::pull`] with typed errors ([`PublishError`], [`PullError`]), an
//!   [`EventStream`] that long-polls and acknowledges an event only once it was handled,
//!   [`Runner::on_events`] to have the runner drive an [`EventHandler`], and
//!   [`MessageInbox`] for [`CommunicationPlugin::receive_messages`] (see
//!   `docs/writing-a-plugin.md`, "Events");
//! - [`TokenIntrospector`], which checks the bearer tokens of the plugin's own callers
//!   with the core (`POST /tokens/introspect`) and caches the answers briefly;
//! - the canonical models of `proto/canonical_models.proto` as serde structs
//!   ([`CanonicalUser`], [`CanonicalMessage`]) in the proto3 JSON mapping.
//!
//! The SDK does not depend on sqlx, on axum or on any TLS stack but rustls with the
//! `ring` provider (`tests/architecture.rs` checks it); it talks HTTP or HTTPS to the
//! core with reqwest (`CORE_URL=https://…`, trusting the system's roots and
//! `VIVIFIED_CA_CERT`).
//!
//! # Two lines in `main`
//!
//! ```no_run
//! use vivified_plugin_sdk::{async_trait, InitializeError, Manifest, Plugin, PluginContext};
//!
//! struct Hello;
//!
//! #[async_trait]
//! impl Plugin for Hello {
//!     fn manifest(&self) -> Manifest {
//!         Manifest::builder("hello", "Hello plugin", "0.1.0")
//!             .build()
//!             .expect("a valid manifest")
//!     }
//!
//!     async fn initialize(&self, _ctx: PluginContext) -> Result<(), InitializeError> {
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     vivified_plugin_sdk::run(Hello).await
//! }
//! ```
//!
//! [`run`] reads `CORE_URL` (default `http://127.0.0.1:8000`),
//! `VIVIFIED_REGISTRATION_SECRET`, `PLUGIN_TOKEN_FILE` and the other variables of
//! [`Config::from_env`], logs JSON lines on stdout, and runs until SIGINT or SIGTERM.
//!
//! # Running against a real core in a test
//!
//! This example runs as a test: it starts a core in-process with `vivified-testkit`,
//! runs the plugin until its first heartbeat is accepted, and stops both.
//!
//! ```
//! use std::time::Duration;
//! use vivified_plugin_sdk::{async_trait, Config, InitializeError, Manifest, Plugin, PluginContext, Runner};
//!
//! struct Hello;
//!
//! #[async_trait]
//! impl Plugin for Hello {
//!     fn manifest(&self) -> Manifest {
//!         Manifest::builder("hello", "Hello plugin", "0.1.0").build().unwrap()
//!     }
//!     async fn initialize(&self, _ctx: PluginContext) -> Result<(), InitializeError> {
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let core = vivified_testkit::TestCore::start().await.unwrap();
//! let runner = Runner::new(Hello, Config::new(core.url())).unwrap();
//! let handle = runner.handle();
//! let task = tokio::spawn(runner.run_until(std::future::pending()));
//!
//! let record = core
//!     .wait_for_plugin("hello", Duration::from_secs(10), "first heartbeat", |r| r["status"] == "active")
//!     .await
//!     .unwrap();
//! assert_eq!(record["health"], "healthy");
//! assert!(handle.status().is_registered());
//!
//! handle.stop();
//! task.await.unwrap().unwrap();
//! # }
//! ```

mod backoff;
mod canonical;
mod client;
mod config;
mod error;
mod events;
mod health;
mod identity;
mod introspect;
mod manifest;
mod plugin;
mod runner;
mod secret;
mod status;
mod token_file;

pub use async_trait::async_trait;
pub use backoff::Backoff;
pub use canonical::{CanonicalMessage, CanonicalUser};
pub use client::{
    CoreClient, CoreError, Introspection, InvalidCoreUrl, MAX_HEARTBEAT_DETAILS, Registration,
    install_crypto_provider,
};
pub use config::{Config, ConfigError, DEFAULT_CORE_URL, MAX_INTROSPECTION_CACHE};
pub use events::{
    DEFAULT_EVENT_WAIT, Event, EventHandler, EventStream, MAX_PULL_LIMIT, MessageInbox,
    OutgoingEvent, PublishError, PullError, Pulled, Receipt,
};
pub use introspect::{AuthError, IntrospectError, TokenIntrospector, bearer_token};
pub use manifest::{
    AuditLevel, Compliance, Contract, DataClass, Manifest, ManifestBuilder, ManifestError,
    PluginTrait, RESERVED_IDS, Security, Violation, subscription_matches,
};
pub use plugin::{
    BoxError, CommunicationPlugin, DeleteError, FindUsersError, GetUserError, Health, HealthReport,
    IdentityPlugin, InitializeError, Plugin, PluginContext, ReceiveMessagesError, RetrieveError,
    SendMessageError, ShutdownError, StorageMetadata, StoragePlugin, StoreError, StoredObject,
    UserQuery,
};
pub use runner::{RunError, Runner, RunnerHandle, run, shutdown_signal};
pub use secret::Secret;
pub use status::{PluginStatus, Refusal};
pub use token_file::TokenFileError;

/// Installs JSON logs on stdout — one object per line, fields under `fields` — with the
/// filter from `RUST_LOG`, else `PLUGIN_LOG_LEVEL`, else `info`. Does nothing when a
/// global subscriber is already installed (so a plugin may install its own first).
pub fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .or_else(|| {
            std::env::var("PLUGIN_LOG_LEVEL")
                .ok()
                .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        })
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
