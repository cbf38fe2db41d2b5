//! Adapters: one implementation per Vivified port and backend.
//!
//! - [`memory`] (feature `memory`): `InMemoryPluginStore`, `InMemoryEventBus`,
//!   `InMemoryAuditLog` — ephemeral, single process; for tests, demos and embedding.
//! - [`jwt`] (feature `jwt`): `JwtTokenIssuer`, HS256 JWTs with key rotation.
//! - [`clock`]: `SystemClock` and a controllable `ManualClock` for tests.
//!
//! Architecture Invariant: adapters depend on `vivified-ports`, never on
//! `vivified-domain`; driver errors are mapped to port errors here and never leak.

pub mod clock;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "memory")]
pub mod memory;
