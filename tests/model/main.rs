//! Model-based tests of the registry (placeholder, being written).
