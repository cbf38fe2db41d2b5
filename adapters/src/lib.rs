//! Adapters: one implementation per Vivified port and backend.
//!
//! - [`memory`] (feature `memory`): `InMemoryPluginStore`, `InMemoryEventBus`,
//!   `InMemoryAuditLog` — ephemeral, single process; for tests, demos and embedding.
//! - [`jwt`] (feature `jwt`): `JwtTokenIssuer`, HS256 JWTs with key rotation.
//! - [`sqlite`] (feature `sqlite`): `SqlitePluginStore`, the embedded default;
//!   [`sqlite_backup`]: an online-consistent copy of it (`VACUUM INTO`).
//! - [`postgres`] (feature `postgres`): `PostgresPluginStore`, for production and replicas.
//! - [`nats`] (feature `nats`): `NatsEventBus`, deliveries in JetStream, for replicas.
//! - [`oidc`] (feature `oidc`): `OidcVerifier`, operators' tokens from an OpenID
//!   Connect identity provider, its keys fetched and cached.
//! - [`audit_memory`], `sqlite::SqliteAuditLog`, `postgres::PostgresAuditLog`: the
//!   tamper-evident audit chain (pending entries, one sealer); the SQL dialects share
//!   one core and never depend on each other.
//! - [`buffered`]: `BufferedHeartbeats`, in front of a durable store: heartbeats that
//!   change nothing but times answered from memory and written in batches.
//! - [`clock`]: `SystemClock` and a controllable `ManualClock` for tests.
//!
//! Architecture Invariant: adapters depend on `vivified-ports`, never on
//! `vivified-domain`; driver errors are mapped to port errors here and never leak.

#[cfg(feature = "memory")]
pub mod audit_memory;
pub mod buffered;
pub mod clock;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "memory")]
mod memory_bus;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "oidc")]
pub mod oidc;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "sqlite")]
pub mod sqlite_backup;
#[cfg(any(feature = "jwt", feature = "oidc"))]
pub mod verified;
