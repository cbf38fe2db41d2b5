//! Event types and subscriptions.
//!
//! An event type is dot-separated segments (`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`, at
//! most [`MAX_EVENT_TYPE_LEN`] bytes), compared case-sensitively everywhere: in
//! publishing, subscriptions and matching (`UserCreated` is not `usercreated`). Upper
//! case is allowed for plugins written for the original Python core, whose events are
//! named like `NotificationSent`. A plugin's manifest may declare
//! `subscriptions`: event types in which a segment may be `*`, matching exactly one
//! segment (`user.*` matches `user.created`, not `user` nor `user.created.v2`).

use serde_json::Value;

/// Longest event type or subscription pattern, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 255;

fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` is a valid event type.
#[must_use]
pub fn is_valid_event_type(s: &str) -> bool {
    s.len() <= MAX_EVENT_TYPE_LEN && s.split('.').all(is_segment)
}

/// Whether `s` is a valid subscription pattern (an event type whose segments may be
/// `*`).
#[must_use]
pub fn is_valid_subscription(s: &str) -> bool {
    s.len() <= MAX_EVENT_TYPE_LEN && s.split('.').all(|seg| seg == "*" || is_segment(seg))
}

/// Whether the subscription `pattern` matches `event_type`: the same number of
/// segments, each equal or `*`.
#[must_use]
pub fn matches(pattern: &str, event_type: &str) -> bool {
    let mut p = pattern.split('.');
    let mut e = event_type.split('.');
    loop {
        match (p.next(), e.next()) {
            (None, None) => return true,
            (Some(ps), Some(es)) if ps == "*" || ps == es => {}
            _ => return false,
        }
    }
}

/// The `subscriptions` a (validated) manifest declares; none if absent.
#[must_use]
pub fn subscriptions_of(manifest: &Value) -> Vec<String> {
    manifest
        .get("subscriptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types() {
        for ok in [
            "user",
            "user.created",
            "a-b_c.0.x",
            "NotificationSent",
            "Patient.Updated",
        ] {
            assert!(is_valid_event_type(ok), "{ok}");
        }
        for bad in [
            "",
            "user.",
            ".user",
            "user..created",
            "user.*",
            "ü",
            "a b",
            "User Created",
            "user.créé",
        ] {
            assert!(!is_valid_event_type(bad), "{bad:?}");
        }
        assert!(!is_valid_event_type(&"a".repeat(MAX_EVENT_TYPE_LEN + 1)));
    }

    #[test]
    fn a_star_matches_exactly_one_segment() {
        assert!(matches("user.*", "user.created"));
        assert!(matches("*.created", "user.created"));
        assert!(matches("*", "user"));
        assert!(matches("user.created", "user.created"));
        assert!(!matches("user.*", "user"));
        assert!(!matches("user.*", "user.created.v2"));
        assert!(!matches("*", "user.created"));
        assert!(!matches("user.created", "user.deleted"));
        assert!(matches("NotificationSent", "NotificationSent"));
        assert!(!matches("notificationsent", "NotificationSent"));
        assert!(!matches("User.*", "user.created"));
        assert!(is_valid_subscription("User.*"));
        assert!(is_valid_subscription("user.*.v1"));
        assert!(!is_valid_subscription("user.**"));
        assert!(!is_valid_subscription("user.>"));
    }
}
