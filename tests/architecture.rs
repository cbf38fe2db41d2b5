//! Architecture invariants (placeholder, being written).
