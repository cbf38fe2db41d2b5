//! The interface contracts: [`Plugin`] (every plugin) and the three contract traits a
//! manifest can declare — [`CommunicationPlugin`], [`StoragePlugin`] and
//! [`IdentityPlugin`] — each operation with its own error type.
//!
//! The traits are object-safe (`#[async_trait]`), so a host can hold any plugin as
//! `Arc<dyn IdentityPlugin>`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::canonical::{CanonicalMessage, CanonicalUser};
use crate::client::CoreClient;
use crate::events::EventStream;
use crate::introspect::TokenIntrospector;
use crate::manifest::Manifest;
use crate::status::PluginStatus;

pub use crate::error::{BoxError, ReceiveMessagesError, SendMessageError};
pub use crate::health::{Health, HealthReport};

/// What a plugin gets when it is initialized: who it is, how the core sees it, and the
/// means to check callers' tokens.
#[derive(Clone, Debug)]
pub struct PluginContext {
    pub(crate) plugin_id: String,
    pub(crate) core_url: String,
    pub(crate) status: watch::Receiver<PluginStatus>,
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) introspector: TokenIntrospector,
    pub(crate) client: CoreClient,
    pub(crate) backoff: Backoff,
}

impl PluginContext {
    /// The plugin's id (from its manifest).
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    /// The core's base URL.
    pub fn core_url(&self) -> &str {
        &self.core_url
    }

    /// The plugin's standing with the core, updated as it changes.
    pub fn status(&self) -> watch::Receiver<PluginStatus> {
        self.status.clone()
    }

    /// Checks callers' tokens with the core (`POST /tokens/introspect`), cached briefly.
    pub fn introspector(&self) -> &TokenIntrospector {
        &self.introspector
    }

    /// A client that speaks as this plugin with the runner's current token (always the
    /// latest, across refreshes and re-registrations): [`CoreClient::publish`] to
    /// publish events, [`CoreClient::pull`] for a single pull.
    pub fn client(&self) -> CoreClient {
        self.client.clone()
    }

    /// A new [`EventStream`] of this plugin's events on the runner's token, with the
    /// runner's backoff: it waits while the plugin is not registered yet (initialize
    /// runs before registration) or is disabled, and never fails. One consumer per
    /// plugin: two streams share one queue. For a handler the runner drives, see
    /// [`crate::Runner::on_events`].
    pub fn events(&self) -> EventStream {
        EventStream::new(self.client.clone()).backoff(self.backoff)
    }

    /// Completes when the plugin is asked to stop (a graceful-shutdown signal for the
    /// plugin's own servers); [`Plugin::shutdown`] follows.
    pub async fn stopping(&self) {
        let mut rx = self.stopping.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Why [`Plugin::initialize`] failed; the runner stops with it.
#[derive(Debug, thiserror::Error)]
pub enum InitializeError {
    /// A setting of the plugin is missing or wrong (name it, never its secret value).
    #[error("configuration: {0}")]
    Config(String),
    /// An I/O operation failed (e.g. binding the plugin's own port).
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else.
    #[error(transparent)]
    Other(BoxError),
}

/// Why [`Plugin::shutdown`] failed (logged by the runner; the process still stops).
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// Work did not finish in time.
    #[error("shutdown timed out after {0:?}")]
    Timeout(Duration),
    /// Anything else.
    #[error(transparent)]
    Other(BoxError),
}

/// Every plugin. The runner ([`crate::Runner`]) calls [`Plugin::manifest`] and
/// [`Plugin::initialize`] once at start, [`Plugin::health_check`] before each
/// heartbeat, and [`Plugin::shutdown`] once at the end.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The manifest the plugin registers with.
    fn manifest(&self) -> Manifest;

    /// Starts the plugin's own work (its HTTP server, workers). Called before the
    /// plugin registers, so it serves even while the core is not up yet.
    ///
    /// # Errors
    /// [`InitializeError`]: the runner does not register and returns it.
    async fn initialize(&self, ctx: PluginContext) -> Result<(), InitializeError>;

    /// The plugin's health, sent with each heartbeat. Must be quick: the runner gives it
    /// at most the request timeout and reports `unhealthy` when it takes longer.
    async fn health_check(&self) -> HealthReport {
        HealthReport::healthy()
    }

    /// Stops the plugin's own work.
    ///
    /// # Errors
    /// [`ShutdownError`], which the runner logs and returns.
    async fn shutdown(&self) -> Result<(), ShutdownError> {
        Ok(())
    }
}

/// Sends and receives [`CanonicalMessage`]s (contract `CommunicationPlugin`).
#[async_trait]
pub trait CommunicationPlugin: Plugin {
    /// Sends `message`; returns the id the transport gave it.
    ///
    /// # Errors
    /// [`SendMessageError`].
    async fn send_message(&self, message: CanonicalMessage) -> Result<String, SendMessageError>;

    /// Returns up to `limit` received messages, oldest first, and removes them from the
    /// plugin's inbox.
    ///
    /// Over the core's events this is one line: keep a [`crate::MessageInbox`] made
    /// from `ctx.events()` in `initialize`, and return `inbox.receive(limit).await`
    /// (messages travel as events whose payload is the message,
    /// [`crate::OutgoingEvent::message`]; one call's messages are acknowledged by the
    /// next call).
    ///
    /// # Errors
    /// [`ReceiveMessagesError`].
    async fn receive_messages(
        &self,
        limit: usize,
    ) -> Result<Vec<CanonicalMessage>, ReceiveMessagesError>;
}

/// What is stored alongside data by a [`StoragePlugin`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageMetadata {
    /// MIME type of the data.
    pub content_type: String,
    /// Data traits of the content (`phi`, `pii`, …), so the store can apply its policy.
    #[serde(default)]
    pub data_traits: Vec<String>,
    /// Free attributes (never PHI or PII).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Data and its metadata, as a [`StoragePlugin`] returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The bytes stored.
    pub data: Vec<u8>,
    /// Their metadata.
    pub metadata: StorageMetadata,
}

/// Why [`StoragePlugin::store`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data is larger than the store accepts.
    #[error("data too large: at most {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The store refuses this content (its traits or type).
    #[error("refused: {0}")]
    Rejected(String),
    /// The backend is not available; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Why [`StoragePlugin::retrieve`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// No object has this id.
    #[error("not found")]
    NotFound,
    /// The backend is not available; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Why [`StoragePlugin::delete`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No object has this id.
    #[error("not found")]
    NotFound,
    /// The backend is not available; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Stores blobs (contract `StoragePlugin`).
#[async_trait]
pub trait StoragePlugin: Plugin {
    /// Stores `data` with `metadata` and returns its new id.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn store(&self, data: Vec<u8>, metadata: StorageMetadata) -> Result<String, StoreError>;

    /// Returns the object stored under `id`.
    ///
    /// # Errors
    /// [`RetrieveError::NotFound`] for an unknown id.
    async fn retrieve(&self, id: &str) -> Result<StoredObject, RetrieveError>;

    /// Deletes the object stored under `id`.
    ///
    /// # Errors
    /// [`DeleteError::NotFound`] for an unknown id.
    async fn delete(&self, id: &str) -> Result<(), DeleteError>;
}

/// A search for users: every given criterion must match; `limit` bounds the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserQuery {
    /// Exact username.
    #[serde(default)]
    pub username: Option<String>,
    /// Exact e-mail address (case-insensitive).
    #[serde(default)]
    pub email: Option<String>,
    /// Has this role.
    #[serde(default)]
    pub role: Option<String>,
    /// At most this many users (the plugin may cap it lower).
    #[serde(default = "UserQuery::default_limit")]
    pub limit: usize,
}

impl UserQuery {
    fn default_limit() -> usize {
        100
    }
}

impl Default for UserQuery {
    fn default() -> Self {
        Self {
            username: None,
            email: None,
            role: None,
            limit: Self::default_limit(),
        }
    }
}

/// Why [`IdentityPlugin::get_user`] failed.
#[derive(Debug, thiserror::Error)]
pub enum GetUserError {
    /// No user has this id.
    #[error("user not found")]
    NotFound,
    /// The directory is not available; retry later.
    #[error("directory unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Why [`IdentityPlugin::find_users`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FindUsersError {
    /// The query cannot be answered (no criterion, a limit of 0, …).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The directory is not available; retry later.
    #[error("directory unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Answers questions about users with [`CanonicalUser`]s (contract `IdentityPlugin`).
/// The seed's schema names this contract without defining it; this is its definition.
#[async_trait]
pub trait IdentityPlugin: Plugin {
    /// The user with this id.
    ///
    /// # Errors
    /// [`GetUserError::NotFound`] for an unknown id.
    async fn get_user(&self, id: &str) -> Result<CanonicalUser, GetUserError>;

    /// The users matching `query`, in a stable order.
    ///
    /// # Errors
    /// [`FindUsersError`].
    async fn find_users(&self, query: &UserQuery) -> Result<Vec<CanonicalUser>, FindUsersError>;
}
