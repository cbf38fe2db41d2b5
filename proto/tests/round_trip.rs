//! Round trips of `CanonicalEvent` between JSON, protobuf and bytes, the payload's number
//! rules, typed errors, and decoding of arbitrary bytes (never a panic).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use vivified_proto::event::{MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS};
use vivified_proto::payload::MAX_SAFE_INTEGER;
use vivified_proto::prost::Message;
use vivified_proto::prost_types::{Any, Timestamp};
use vivified_proto::{
    CanonicalEvent, CanonicalEventJson, EventError, EventTypeError, PayloadError, STRUCT_TYPE_URL,
    decode_event, encode_event, validate_event_type,
};

fn sample() -> CanonicalEventJson {
    serde_json::from_value(json!({
        "event_id": "0b6f5e0c-2d7a-4a51-9d3e-3c1b2a0f9e11",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "event_type": "user.created",
        "timestamp": "2026-11-28T00:04:37.195035Z",
        "source_plugin": "user-management",
        "data_traits": ["pii"],
        "payload": {"user_id": "u-1", "age": 42, "score": 0.25, "tags": ["a", null, true], "address": {"zip": "12345"}},
        "metadata": {"content-language": "en"}
    }))
    .unwrap()
}

/// JSON → proto → bytes → proto → JSON.
fn through_the_bus(event: CanonicalEventJson) -> Result<CanonicalEventJson, EventError> {
    let proto = event.into_proto()?;
    let bytes = encode_event(&proto);
    let decoded = decode_event(&bytes)?;
    assert_eq!(decoded, proto, "protobuf bytes round trip");
    CanonicalEventJson::from_proto(decoded)
}

#[test]
fn a_sample_event_round_trips_through_protobuf_bytes_and_json_text() {
    let event = sample();
    assert_eq!(through_the_bus(event.clone()).unwrap(), event);

    let text = serde_json::to_string(&event).unwrap();
    assert!(
        text.contains(r#""timestamp":"2026-11-28T00:04:37.195035Z""#),
        "{text}"
    );
    assert_eq!(
        serde_json::from_str::<CanonicalEventJson>(&text).unwrap(),
        event
    );

    let bytes = event.clone().into_bytes().unwrap();
    assert_eq!(CanonicalEventJson::from_bytes(&bytes).unwrap(), event);
}

#[test]
fn the_payload_travels_as_a_struct_packed_in_the_any() {
    let proto = CanonicalEvent::try_from(sample()).unwrap();
    let any = proto.payload.as_ref().unwrap();
    assert_eq!(any.type_url, STRUCT_TYPE_URL);
    let decoded = vivified_proto::prost_types::Struct::decode(any.value.as_slice()).unwrap();
    assert_eq!(decoded.fields.len(), 5);
    assert_eq!(
        proto.timestamp,
        Some(Timestamp {
            seconds: datetime!(2026-11-28 00:04:37 UTC).unix_timestamp(),
            nanos: 195_035_000
        })
    );
}

/// Found by the `event` fuzz target: a whole float in the payload comes back as the
/// integer of the same value (as the payload module documents), and a second trip
/// through the bus changes nothing.
#[test]
fn a_whole_float_comes_back_as_its_integer_and_then_stays() {
    let mut event = sample();
    event
        .payload
        .insert("n".into(), json!([1, 2.0, -0.0, 2.5, null, true]));
    let back = through_the_bus(event).unwrap();
    assert_eq!(back.payload["n"], json!([1, 2, -0.0, 2.5, null, true]));
    assert!(back.payload["n"][1].is_u64(), "2.0 is now the integer 2");
    assert!(back.payload["n"][2].is_f64(), "-0.0 stays a float");
    assert_eq!(through_the_bus(back.clone()).unwrap(), back);
}

#[test]
fn an_offset_timestamp_keeps_its_instant_and_comes_back_in_utc() {
    let mut event = sample();
    event.timestamp = datetime!(2026-11-28 02:04:37.5 +02:00);
    let back = through_the_bus(event.clone()).unwrap();
    assert_eq!(back.timestamp, event.timestamp);
    assert_eq!(back.timestamp.offset(), time::UtcOffset::UTC);
    let text = serde_json::to_value(&back).unwrap();
    assert_eq!(text["timestamp"], "2026-11-28T00:04:37.5Z");
}

#[test]
fn data_traits_and_metadata_may_be_left_out_and_unknown_fields_are_refused() {
    let minimal: CanonicalEventJson = serde_json::from_value(json!({
        "event_id": "e", "trace_id": "t", "event_type": "a.b",
        "timestamp": "2026-01-01T00:00:00Z", "source_plugin": "p", "payload": {}
    }))
    .unwrap();
    assert!(minimal.data_traits.is_empty() && minimal.metadata.is_empty());
    assert_eq!(through_the_bus(minimal.clone()).unwrap(), minimal);

    let mut extra = serde_json::to_value(sample()).unwrap();
    extra["admin"] = json!(true);
    assert!(serde_json::from_value::<CanonicalEventJson>(extra).is_err());

    let mut not_an_object = serde_json::to_value(sample()).unwrap();
    not_an_object["payload"] = json!([1, 2]);
    assert!(serde_json::from_value::<CanonicalEventJson>(not_an_object).is_err());

    let mut bad_time = serde_json::to_value(sample()).unwrap();
    bad_time["timestamp"] = json!("yesterday");
    assert!(serde_json::from_value::<CanonicalEventJson>(bad_time).is_err());
}

#[test]
fn conversions_refuse_invalid_events_with_typed_errors() {
    let mut bad_type = sample();
    bad_type.event_type = "User Created".into();
    assert_eq!(
        bad_type.into_proto(),
        Err(EventError::InvalidEventType(
            EventTypeError::InvalidCharacter {
                index: 4,
                found: ' '
            }
        ))
    );
    let mut long = sample();
    long.event_type = "A".repeat(256);
    assert_eq!(
        long.into_proto(),
        Err(EventError::InvalidEventType(EventTypeError::TooLong))
    );

    let mut big = sample();
    big.payload.insert("id".into(), json!(MAX_SAFE_INTEGER + 2));
    assert_eq!(
        big.into_proto(),
        Err(EventError::Payload(PayloadError::IntegerOutOfRange {
            pointer: "/id".into()
        }))
    );

    let mut too_early = sample();
    too_early.timestamp = datetime!(0000-12-31 23:59:59 UTC);
    assert_eq!(too_early.into_proto(), Err(EventError::TimestampOutOfRange));

    let good = CanonicalEvent::try_from(sample()).unwrap();

    let mut other_type = good.clone();
    other_type.payload = Some(Any {
        type_url: "type.googleapis.com/vivified.canonical.v1.CanonicalUser".into(),
        value: vec![],
    });
    assert_eq!(
        CanonicalEventJson::try_from(other_type),
        Err(EventError::Payload(PayloadError::UnexpectedType {
            type_url: "type.googleapis.com/vivified.canonical.v1.CanonicalUser".into()
        }))
    );

    let mut no_payload = good.clone();
    no_payload.payload = None;
    assert_eq!(
        CanonicalEventJson::from_proto(no_payload),
        Err(EventError::MissingPayload)
    );

    let mut no_time = good.clone();
    no_time.timestamp = None;
    assert_eq!(
        CanonicalEventJson::from_proto(no_time),
        Err(EventError::MissingTimestamp)
    );

    for (seconds, nanos) in [
        (MAX_TIMESTAMP_SECONDS + 1, 0),
        (MIN_TIMESTAMP_SECONDS - 1, 0),
        (0, -1),
        (0, 1_000_000_000),
        (i64::MIN, 0),
    ] {
        let mut bad_time = good.clone();
        bad_time.timestamp = Some(Timestamp { seconds, nanos });
        assert_eq!(
            CanonicalEventJson::from_proto(bad_time),
            Err(EventError::TimestampOutOfRange),
            "{seconds} {nanos}"
        );
    }

    let mut bad_type_on_the_bus = good;
    bad_type_on_the_bus.event_type = "a..b".into();
    assert_eq!(
        CanonicalEventJson::from_proto(bad_type_on_the_bus),
        Err(EventError::InvalidEventType(EventTypeError::EmptySegment {
            index: 2
        }))
    );

    assert!(matches!(
        decode_event(&[0x0a, 0xff]),
        Err(EventError::Decode(_))
    ));
}

#[test]
fn the_extremes_of_the_timestamp_range_round_trip() {
    for t in [
        datetime!(0001-01-01 00:00:00 UTC),
        datetime!(9999-12-31 23:59:59.999_999_999 UTC),
        datetime!(1969-12-31 23:59:59.5 UTC),
    ] {
        let mut event = sample();
        event.timestamp = t;
        assert_eq!(through_the_bus(event.clone()).unwrap(), event);
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            serde_json::from_str::<CanonicalEventJson>(&text).unwrap(),
            event
        );
    }
}

#[test]
fn equal_events_encode_to_equal_bytes() {
    let mut a = sample();
    let mut b = sample();
    for i in 0..50 {
        a.metadata.insert(format!("k{i}"), i.to_string());
        b.metadata
            .insert(format!("k{}", 49 - i), (49 - i).to_string());
    }
    assert_eq!(a.into_bytes().unwrap(), b.into_bytes().unwrap());
}

// ---- property tests -------------------------------------------------------------------

/// A JSON number the payload keeps exactly: a safe integer, or a finite float that is not
/// an integral value of the safe range (which would come back as an integer).
fn number() -> impl Strategy<Value = Value> {
    let safe = MAX_SAFE_INTEGER as i64;
    prop_oneof![
        (-safe..=safe).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite, not a safe integer", |f| {
                f.is_finite() && !(f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64)
            })
            .prop_map(Value::from),
        Just(json!(-0.0)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn payload() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..8)
        .prop_map(|m| m.into_iter().collect())
}

fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    (
        MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS,
        0u32..1_000_000_000,
    )
        .prop_map(|(s, n)| {
            OffsetDateTime::from_unix_timestamp(s)
                .and_then(|t| t.replace_nanosecond(n))
                .unwrap()
        })
}

fn event() -> impl Strategy<Value = CanonicalEventJson> {
    (
        any::<String>(),
        any::<String>(),
        "[A-Za-z0-9_-]{1,8}(\\.[A-Za-z0-9_-]{1,8}){0,4}",
        timestamp(),
        any::<String>(),
        prop::collection::vec(any::<String>(), 0..4),
        payload(),
        prop::collection::btree_map(any::<String>(), any::<String>(), 0..4),
    )
        .prop_map(
            |(
                event_id,
                trace_id,
                event_type,
                timestamp,
                source_plugin,
                data_traits,
                payload,
                metadata,
            )| CanonicalEventJson {
                event_id,
                trace_id,
                event_type,
                timestamp,
                source_plugin,
                data_traits,
                payload,
                metadata,
            },
        )
}

/// The grammar by another road: split on dots, each segment non-empty over the alphabet.
fn reference_is_valid(s: &str) -> bool {
    s.len() <= 255
        && s.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_event_round_trips_json_proto_bytes_proto_json(event in event()) {
        prop_assert_eq!(through_the_bus(event.clone()).unwrap(), event);
    }

    #[test]
    fn any_event_round_trips_through_json_text(event in event()) {
        let text = serde_json::to_string(&event).unwrap();
        prop_assert_eq!(serde_json::from_str::<CanonicalEventJson>(&text).unwrap(), event);
    }

    #[test]
    fn integral_floats_come_back_as_the_same_number(f in -(MAX_SAFE_INTEGER as i64)..=(MAX_SAFE_INTEGER as i64)) {
        let mut event = sample();
        event.payload.insert("n".into(), json!(f as f64));
        let back = through_the_bus(event).unwrap();
        prop_assert_eq!(back.payload["n"].as_f64(), Some(f as f64));
        prop_assert_eq!(back.payload["n"].as_i64(), Some(f));
    }

    #[test]
    fn event_type_validation_matches_the_grammar(s in "[a-z0-9_.A-Z*> é-]{0,12}|[a-zA-Z.]{250,260}") {
        prop_assert_eq!(validate_event_type(&s).is_ok(), reference_is_valid(&s), "{:?}", s);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(event) = decode_event(&bytes) {
            let _ = CanonicalEventJson::from_proto(event);
        }
        let _ = CanonicalEventJson::from_bytes(&bytes);
    }

    #[test]
    fn decoding_a_damaged_event_never_panics(
        event in event(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = event.into_bytes().unwrap();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(decoded) = CanonicalEventJson::from_bytes(&bytes) {
            // Whatever still decodes is a well-formed event that converts back.
            let again = decoded.clone().into_bytes().unwrap();
            prop_assert_eq!(CanonicalEventJson::from_bytes(&again).unwrap(), decoded);
        }
    }

    #[test]
    fn a_struct_in_the_any_decodes_whatever_its_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut event = CanonicalEvent::try_from(sample()).unwrap();
        event.payload = Some(Any { type_url: STRUCT_TYPE_URL.into(), value: bytes });
        match CanonicalEventJson::from_proto(event) {
            Ok(json) => prop_assert!(json.payload.len() <= 512),
            Err(EventError::Payload(_)) => {}
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}

#[test]
fn a_deeply_nested_struct_on_the_bus_is_a_typed_error() {
    // Nested far past prost's recursion limit: Struct → entry → Value → Struct …
    let mut value = vivified_proto::prost_types::Struct::default();
    for _ in 0..200 {
        value = vivified_proto::prost_types::Struct {
            fields: BTreeMap::from([(
                "a".to_owned(),
                vivified_proto::prost_types::Value {
                    kind: Some(vivified_proto::prost_types::value::Kind::StructValue(value)),
                },
            )]),
        };
    }
    let mut event = CanonicalEvent::try_from(sample()).unwrap();
    event.payload = Some(Any {
        type_url: STRUCT_TYPE_URL.into(),
        value: value.encode_to_vec(),
    });
    let bytes = encode_event(&event);
    assert!(matches!(
        CanonicalEventJson::from_bytes(&bytes),
        Err(EventError::Payload(PayloadError::Malformed(_)))
    ));
}
