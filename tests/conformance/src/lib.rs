//! The conformance suites every adapter runs, one per port, and the record builders
//! they share: the executable form of the MUST sentences in the port docs
//! (`vivified_ports`). The in-memory, SQLite and Postgres stores, the in-process and
//! NATS buses and every audit log pass the same suite, which is what makes the
//! in-memory fakes trustworthy.
//!
//! Dev-only: adapters list it under `[dev-dependencies]`.

pub mod audit;
pub mod bus;
pub mod operators;
pub mod store;
