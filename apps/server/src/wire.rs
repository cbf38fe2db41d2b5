//! Wire formats shared by the handlers.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `t` in RFC 3339, as `time` writes it (fraction only when non-zero).
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Every time here is UTC within years 0-9999, which RFC 3339 can always write.
    t.format(&Rfc3339).unwrap_or_default()
}
