//! The state every handler reaches: the services, shared.

use std::sync::Arc;
use std::time::Duration;

use vivified_domain::Registry;
use vivified_domain::broker::Broker;

use crate::audit::AuditChain;

/// What every handler can reach: one shared [`Services`], so the clone every request
/// makes (axum hands each handler its own state) is one reference-count increment.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` between the handlers.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// The registry service.
    pub registry: Registry,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// The audit log (the registry's) and its chain key, for `/audit` and `/ready`.
    pub audit: AuditChain,
    /// Events between plugins.
    pub broker: Broker,
    /// Longest `wait` of a pull of events.
    pub events_max_wait: Duration,
    /// The public keys of the token signing keys, a JWK set (`/.well-known/jwks.json`).
    pub jwks: serde_json::Value,
    /// Per-address limit of registration and enrollment requests.
    pub registration_limit: crate::rate_limit::AddressLimit,
    /// Lock-out after repeated failed authentications, per address and credential.
    pub auth_failures: crate::rate_limit::FailureLimit,
}
