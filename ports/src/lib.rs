//! The ports of the Vivified core: the async traits the core talks through and the
//! plain data they carry.
//!
//! Architecture Invariant: this crate does no I/O and knows no backend. It depends on
//! serde, serde_json, async-trait, thiserror, time, hex and subtle only (plus mockall under the
//! `testing` feature, which exports a mock of every port). Rules — the audit chain's
//! keyed hashing and verification among them — are the domain's.
//!
//! Every port is object-safe and used as `Arc<dyn Port>`, so the backend is chosen by
//! configuration at run time. Each method states its contract with MUST wording; the
//! conformance suites of the dev-only `vivified-conformance` crate check those sentences
//! against every adapter.
#![warn(missing_docs)]

pub mod audit;
pub mod bus;
pub mod clock;
pub mod enrollment;
pub mod identity;
pub mod operator;
pub mod plugin;
pub mod record;
pub mod secret;
pub mod store;
pub mod token;

pub use audit::{
    AuditEntry, AuditError, AuditLog, AuditOutcome, AuditQuery, ChainHash, ChainHasher, ChainHead,
    ChainKeyRing, ChainMark, SealPlan, SealReport, SealedEntry, StoredCheckpoint,
};
pub use bus::{BusError, BusEvent, Cursor, EventBus, Pulled};
pub use clock::Clock;
pub use enrollment::Enrollment;
pub use identity::{ExternalClaims, ExternalIdentity, IdentityError};
pub use operator::{
    BreakGlass, InvalidOperatorName, Operator, OperatorName, OperatorStore, OperatorToken, Role,
};
pub use plugin::{
    Health, InvalidPluginId, Liveness, PluginId, REVOKED_JTI, SENSITIVE_TRAITS, StoredManifest,
    sensitive_traits_of,
};
pub use record::{
    BufferedBeat, DEFAULT_INSTANCE, HeartbeatRefused, InstanceId, InstanceRecord,
    InvalidInstanceId, MAX_INSTANCE_ID_LEN, PluginRecord, Swept,
};
pub use secret::Secret;
pub use store::{HeartbeatOutcome, LivenessCounts, OutboxEntry, PluginStore, StoreError};
pub use token::{IssuedToken, TokenClaims, TokenError, TokenIssuer, VerifyOptions};

/// A boxed error from a backend, carried as the `source` of port errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
