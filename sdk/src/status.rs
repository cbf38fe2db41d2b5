//! `PluginStatus`: the plugin's standing with the core, published on a watch channel.

use std::time::Duration;

use time::OffsetDateTime;

/// Why the core refuses to register the plugin (the runner keeps retrying, slowly,
/// because an operator can fix each of these without restarting the plugin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 409 `already_registered`: the id is held and this plugin has no valid token for
    /// it (an operator frees it with `DELETE /plugins/{id}`).
    AlreadyRegistered,
    /// 401 `registration_secret_required`: a production core, and no (or a wrong)
    /// `VIVIFIED_REGISTRATION_SECRET`.
    RegistrationSecretRequired,
    /// Another 401/403 on registration, with the core's reason code.
    Unauthorized(String),
}

/// Where the plugin stands with the core. Read it with
/// [`crate::RunnerHandle::status`] or [`crate::PluginContext::status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginStatus {
    /// Initializing; nothing sent to the core yet.
    Starting,
    /// Registering; `attempt` failed attempts so far (the core is down or slow).
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
    },
    /// Registered, and the last heartbeat (if any yet) was accepted.
    Registered {
        /// When the current token expires (it is refreshed before).
        expires_at: OffsetDateTime,
        /// How often the plugin heartbeats.
        heartbeat_interval: Duration,
    },
    /// Registered, but heartbeats fail (core down, slow or answering 5xx); retrying
    /// with backoff. The token is kept: a core that comes back with its store accepts
    /// it again.
    CoreUnavailable {
        /// Consecutive failed heartbeats.
        failures: u32,
    },
    /// The core answered 403 `plugin_disabled`: an operator disabled the plugin. It
    /// keeps running and heartbeating with backoff, and turns `Registered` again when
    /// the core accepts a heartbeat.
    Disabled,
    /// The core refuses the registration; retrying with backoff.
    Refused(Refusal),
    /// Stopping: deregistering (if configured) and shutting the plugin down.
    Stopping,
    /// Stopped.
    Stopped,
}

impl PluginStatus {
    /// Whether the core currently accepts the plugin's heartbeats.
    pub fn is_registered(&self) -> bool {
        matches!(self, Self::Registered { .. })
    }
}
