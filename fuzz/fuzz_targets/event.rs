//! An event: the JSON a publisher sends, as the canonical event's JSON form, through
//! protobuf bytes and back. Never a panic; an event type is accepted exactly when it
//! fits the grammar; whatever converts one way converts back to an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vivified_proto::{CanonicalEventJson, validate_event_type};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let ok = validate_event_type(text).is_ok();
        let grammar = text.len() <= 255
            && text.split('.').all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        assert_eq!(ok, grammar, "{text:?}");
        assert_eq!(vivified_domain::events::is_valid_event_type(text), grammar);
    }
    let Ok(value) = vivified_domain::json::from_slice(data) else {
        return;
    };
    let Ok(event) = serde_json::from_value::<CanonicalEventJson>(value) else {
        return;
    };
    let Ok(bytes) = event.clone().into_bytes() else {
        return;
    };
    let back = CanonicalEventJson::from_bytes(&bytes).expect("our own bytes decode");
    assert_eq!(back, event);
});
