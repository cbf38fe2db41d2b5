//! Time, as a port, so that tests control it.

use time::OffsetDateTime;

/// The source of the current time for every rule that depends on it (token expiry,
/// heartbeat deadlines, timestamps of records).
pub trait Clock: Send + Sync {
    /// The current time in UTC. MUST never go backwards by more than the clock leeway
    /// the core tolerates (5 s) between two calls on one process.
    fn now(&self) -> OffsetDateTime;
}
