//! Wire formats shared by the handlers.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `t` in RFC 3339, as `time` writes it (fraction only when non-zero).
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Every time here is UTC within years 0-9999, which RFC 3339 can always write.
    t.format(&Rfc3339).unwrap_or_default()
}

/// For an optional body member that may be absent but not `null`: with
/// `#[serde(default, deserialize_with = "crate::wire::present")]`, an absent member is
/// `None` and any present value, `null` included, is `Some` (for the handler to refuse
/// what the document does not allow).
///
/// # Errors
/// Never for valid JSON.
pub fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}
