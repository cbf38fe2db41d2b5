//! Workspace-level tests live in `api/` and `architecture.rs`; this library is empty.
