//! An event: the JSON a publisher sends, as the canonical event's JSON form, through
//! protobuf bytes and back. Never a panic; an event type is accepted exactly when it
//! fits the grammar; whatever converts one way converts back to the same JSON numbers
//! and values (a whole float such as `2.0` comes back as the integer `2`, as
//! `vivified_proto::payload` documents), and a second trip changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
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
    let mut sent = event.clone();
    let mut got = back.clone();
    assert!(
        same_json(
            &Value::Object(std::mem::take(&mut sent.payload)),
            &Value::Object(std::mem::take(&mut got.payload))
        ),
        "{event:?} came back as {back:?}"
    );
    assert_eq!(got, sent, "everything but the payload comes back as it was");
    let again = back.clone().into_bytes().expect("a decoded event encodes");
    assert_eq!(
        CanonicalEventJson::from_bytes(&again).expect("decodes"),
        back
    );
});

/// Equal JSON, numbers compared by value (`2.0` = `2`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
