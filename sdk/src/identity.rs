//! The plugin's identity and own token, shared by the client, the runner and the
//! introspector.

use std::sync::{PoisonError, RwLock};

use crate::secret::Secret;

/// The plugin's own token, shared by the runner (which sets it) and the introspector
/// (which authenticates with it).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) plugin_id: String,
    /// Whether a runner keeps the token current (re-registering when it is refused),
    /// so users of it wait and retry instead of failing.
    pub(crate) managed: bool,
    token: RwLock<Option<Secret>>,
    /// Signalled when the core refuses the plugin's own token on an introspection, so
    /// the runner checks its registration at once instead of at the next heartbeat.
    pub(crate) token_refused: tokio::sync::Notify,
}

impl Shared {
    pub(crate) fn new(plugin_id: String, token: Option<Secret>) -> Self {
        Self {
            plugin_id,
            managed: false,
            token: RwLock::new(token),
            token_refused: tokio::sync::Notify::new(),
        }
    }

    /// The runner's: it sets the token and re-registers when told it was refused.
    pub(crate) fn managed(plugin_id: String) -> Self {
        Self {
            managed: true,
            ..Self::new(plugin_id, None)
        }
    }

    pub(crate) fn token(&self) -> Option<Secret> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_token(&self, token: Option<Secret>) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = token;
    }
}
