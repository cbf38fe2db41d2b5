//! Vivified's canonical data models as protobuf (prost), and the JSON mapping of
//! [`CanonicalEvent`] the core speaks over HTTP.
//!
//! # Layout
//!
//! - `proto/canonical_models.proto` — the source of truth: `CanonicalEvent`,
//!   `CanonicalUser`, `CanonicalMessage` in package `vivified.canonical.v1`.
//! - `src/generated/vivified.canonical.v1.rs` — the Rust prost-build makes of it,
//!   **checked in** and re-exported as [`v1`]. There is no build script and no system
//!   `protoc`: building this crate compiles plain Rust.
//! - `tests/generated_code.rs` — regenerates that file in memory with `protox` (a
//!   protobuf compiler in Rust) and `prost-build` (both dev-dependencies only) and fails
//!   if the checked-in file differs. It is formatted by prost-build's `format` feature
//!   (prettyplease), not rustfmt, and pulled in with `include!`, which `cargo fmt` does
//!   not follow.
//! - [`event`] — [`CanonicalEventJson`], lossless conversions to/from [`CanonicalEvent`],
//!   and [`encode_event`]/[`decode_event`] for the bus.
//! - [`payload`] — `serde_json` ↔ `google.protobuf.Struct`/`Value`/`Any`, with the number
//!   and depth rules.
//! - [`event_type`] — [`validate_event_type`] (`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`,
//!   at most [`MAX_EVENT_TYPE_LEN`] bytes, case-sensitive).
//!
//! # Example
//!
//! ```
//! use vivified_proto::{CanonicalEventJson, decode_event, encode_event};
//!
//! let json: CanonicalEventJson = serde_json::from_str(r#"{
//!     "event_id": "e-1", "trace_id": "t-1", "event_type": "user.created",
//!     "timestamp": "2026-11-28T00:04:37Z", "source_plugin": "user-management",
//!     "data_traits": ["pii"], "payload": {"user_id": "u-1", "age": 42}
//! }"#)?;
//! let event = json.clone().into_proto()?;          // CanonicalEvent, payload packed
//! let bytes = encode_event(&event);                // what goes on the bus
//! let back = CanonicalEventJson::from_proto(decode_event(&bytes)?)?;
//! assert_eq!(back, json);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Regenerating
//!
//! After editing `canonical_models.proto` (or the prost-build configuration in
//! `tests/generated_code.rs`), from the repository root:
//!
//! ```sh
//! make proto   # = VIVIFIED_REGENERATE_PROTO=1 cargo test -p vivified-proto --test generated_code
//! ```
//!
//! and commit the rewritten file. Without the variable the same test only compares.
//!
//! # Wire compatibility
//!
//! Field numbers are the contract between core replicas and versions: never renumber or
//! reuse one; a breaking change goes to a new package (`vivified.canonical.v2`).
#![warn(missing_docs)]

pub mod event;
pub mod event_type;
pub mod payload;

/// The generated protobuf types of package `vivified.canonical.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!("generated/vivified.canonical.v1.rs");
}

pub use event::{CanonicalEventJson, EventError, decode_event, encode_event};
pub use event_type::{
    EventTypeError, MAX_EVENT_TYPE_LEN, is_valid_event_type, validate_event_type,
};
pub use payload::{PayloadError, STRUCT_TYPE_URL, pack_payload, unpack_payload};
pub use v1::{CanonicalEvent, CanonicalMessage, CanonicalUser};

/// The prost and prost-types versions the generated code is built against, so users need
/// not depend on matching versions themselves.
pub use {prost, prost_types};
