//! The rules and services of the Vivified core, embeddable as a library.
//!
//! `vivified-domain` validates manifests and runs the plugin registry. It talks to the
//! world only through the traits of [`vivified_ports`], so you choose the adapters: the
//! in-memory ones below for a test or an embedded registry, SQL and NATS ones in a
//! server. No HTTP, no database driver, no networking in this crate.
//!
//! ```
//! use std::sync::Arc;
//! use vivified_adapters::{
//!     clock::SystemClock, jwt::{JwtConfig, JwtTokenIssuer},
//!     memory::{InMemoryAuditLog, InMemoryEventBus, InMemoryPluginStore},
//! };
//! use vivified_domain::{
//!     manifest::ManifestValidator,
//!     registry::{HeartbeatReport, Ports, Registry, RegistryConfig},
//! };
//! use vivified_ports::{Health, Liveness, Secret};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = Arc::new(InMemoryPluginStore::new());
//! let ports = Ports {
//!     store: store.clone(),
//!     operators: store,
//!     identity: None,
//!     tokens: Arc::new(JwtTokenIssuer::new(JwtConfig::new(Secret::new("a-secret-of-at-least-32-bytes!!!")))?),
//!     clock: Arc::new(SystemClock),
//!     bus: Arc::new(InMemoryEventBus::new(64)),
//!     audit: Arc::new(InMemoryAuditLog::new(1024)),
//! };
//! let registry = Registry::new(ports, Arc::new(ManifestValidator::new()?), RegistryConfig::default());
//!
//! // Register the seed's example plugin (dev mode: open registration).
//! let manifest: serde_json::Value =
//!     serde_json::from_str(include_str!("../../schemas/examples/user-management.json"))?;
//! let reg = registry.register(&manifest, None, "trace-1").await?;
//!
//! // The plugin heartbeats with its token …
//! let token = reg.token.expose();
//! registry.heartbeat("user-management", Some(token), HeartbeatReport { health: Health::Healthy }).await?;
//!
//! // … and reads its record back.
//! let record = registry.get("user-management", Some(token)).await?;
//! assert_eq!(record.status, Liveness::Active);
//! assert_eq!(record.health, Health::Healthy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Metrics go to the [`metrics`] crate's recorder. The registry takes the handles of
//! the counters it increments on every registration and heartbeat on first use, so
//! install your recorder before the registry first serves.
//!
//! Architecture Invariant: this crate depends on `vivified-ports` and pure libraries
//! only — never on an adapter, axum, hyper, sqlx, async-nats, jsonwebtoken or tokio
//! (`tests/architecture.rs` enforces it).

pub mod audit_chain;
pub mod broker;
pub mod events;
pub mod json;
pub mod manifest;
pub mod policy;
pub mod registry;
pub mod suggest;

pub use manifest::{CheckedManifest, Manifest, ManifestValidator, Violation};
pub use policy::{
    Action, CompiledFacts, DataTraits, Decision, Effect, PluginFacts, Policy, PolicyError,
};
pub use registry::{
    AuthMethod, Caller, HeartbeatReport, Introspection, IssuedOperatorToken, IssuedRegistration,
    Mode, Operation, OperatorDetails, Ports, Principal, Registry, RegistryConfig, RegistryError,
    Revocation, SweepReport,
};
