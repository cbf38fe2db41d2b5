//! HTTP API tests (placeholder, being written).
