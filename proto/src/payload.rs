//! `serde_json` ↔ `google.protobuf.Struct`/`Value`, and the `Any` that carries an event's
//! JSON payload on the bus.
//!
//! # Numbers
//!
//! A `google.protobuf.Value` number is an `f64`, so:
//!
//! - An integer converts only if it is a *safe integer*, `|n| ≤ 2^53 − 1`
//!   ([`MAX_SAFE_INTEGER`], JavaScript's `Number.MAX_SAFE_INTEGER`), where every integer
//!   has its own `f64`. A larger one is refused with
//!   [`PayloadError::IntegerOutOfRange`] instead of being rounded: send it as a string.
//! - On the way back an integral `f64` within that range becomes a JSON integer, and
//!   every other finite `f64` a JSON float. So a payload round-trips to an equal
//!   `serde_json::Value` when its integers are safe integers and its floats are not
//!   integral safe-range values; `1.0` comes back as `1` (the same JSON number, a
//!   different `serde_json::Number`). `-0.0` stays a float.
//! - A non-finite `f64` (NaN, ±∞) found in a `Struct` is refused: JSON has no such number.
//!
//! # Depth
//!
//! prost refuses to decode messages nested more than 100 deep, and every JSON level
//! costs up to three protobuf levels (`Struct` → map entry → `Value`). A payload may
//! therefore nest at most [`MAX_PAYLOAD_DEPTH`] objects/arrays (the payload object
//! itself is level 1); a deeper one is refused when it is packed, so whatever is packed
//! also decodes. The same bound keeps the recursion here shallow.
//!
//! Errors name the place with a JSON Pointer (RFC 6901), never a value of the payload:
//! a payload may carry PHI.

use prost::Message;
use prost_types::value::Kind;
use prost_types::{Any, ListValue, NullValue, Struct, Value};
use serde_json::{Map, Number};

/// Type URL of a `google.protobuf.Struct` packed in an `Any`; the only payload type the
/// JSON mapping accepts.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

/// `2^53 − 1`: the largest integer magnitude a payload may carry (see the module docs).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Deepest nesting of objects and arrays in a payload, the payload object being level 1.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// Why a JSON payload and its protobuf form do not convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// An integer outside `±(2^53 − 1)`, which an `f64` cannot hold exactly.
    #[error(
        "payload integer at {pointer:?} is outside ±(2^53 - 1); a protobuf Struct number is an f64 and would lose precision (send it as a string)"
    )]
    IntegerOutOfRange {
        /// JSON Pointer to the number.
        pointer: String,
    },
    /// NaN or an infinity in a `Struct`: JSON has no such number.
    #[error("payload number at {pointer:?} is not finite")]
    NonFiniteNumber {
        /// JSON Pointer to the number.
        pointer: String,
    },
    /// A `google.protobuf.Value` with no `kind` set.
    #[error("payload value at {pointer:?} has no kind")]
    MissingKind {
        /// JSON Pointer to the value.
        pointer: String,
    },
    /// Objects/arrays nested deeper than [`MAX_PAYLOAD_DEPTH`].
    #[error("payload nests deeper than {max} objects/arrays at {pointer:?}")]
    TooDeep {
        /// JSON Pointer to the first value past the limit.
        pointer: String,
        /// [`MAX_PAYLOAD_DEPTH`].
        max: usize,
    },
    /// The `Any` holds something other than a `google.protobuf.Struct`.
    #[error("payload type is {type_url:?}, expected {STRUCT_TYPE_URL:?}")]
    UnexpectedType {
        /// The `Any`'s type URL.
        type_url: String,
    },
    /// The `Any`'s bytes are not a `google.protobuf.Struct` prost can decode.
    #[error("payload bytes are not a google.protobuf.Struct")]
    Malformed(#[source] prost::DecodeError),
}

impl PayloadError {
    /// Puts `segment` (an object key or array index) in front of the error's pointer as
    /// the error travels up out of the recursion.
    fn within(mut self, segment: &str) -> Self {
        if let Self::IntegerOutOfRange { pointer }
        | Self::NonFiniteNumber { pointer }
        | Self::MissingKind { pointer }
        | Self::TooDeep { pointer, .. } = &mut self
        {
            let escaped = segment.replace('~', "~0").replace('/', "~1");
            pointer.insert_str(0, &escaped);
            pointer.insert(0, '/');
        }
        self
    }
}

/// Converts a JSON object to a `google.protobuf.Struct`.
///
/// # Errors
///
/// [`PayloadError::IntegerOutOfRange`] for an integer outside `±(2^53 − 1)` and
/// [`PayloadError::TooDeep`] past [`MAX_PAYLOAD_DEPTH`].
pub fn json_to_struct(object: &Map<String, serde_json::Value>) -> Result<Struct, PayloadError> {
    object_to_struct(object, 1)
}

/// Converts a JSON value to a `google.protobuf.Value` (a scalar is depth 0, an object or
/// array depth 1).
///
/// # Errors
///
/// As [`json_to_struct`].
pub fn json_to_value(value: &serde_json::Value) -> Result<Value, PayloadError> {
    to_proto(value, 0)
}

/// Converts a `google.protobuf.Struct` to a JSON object.
///
/// # Errors
///
/// [`PayloadError::NonFiniteNumber`], [`PayloadError::MissingKind`], and
/// [`PayloadError::TooDeep`] past [`MAX_PAYLOAD_DEPTH`].
pub fn struct_to_json(object: &Struct) -> Result<Map<String, serde_json::Value>, PayloadError> {
    struct_to_object(object, 1)
}

/// Converts a `google.protobuf.Value` to JSON.
///
/// # Errors
///
/// As [`struct_to_json`].
pub fn value_to_json(value: &Value) -> Result<serde_json::Value, PayloadError> {
    to_json(value, 0)
}

/// Packs a JSON object into an `Any` holding a `google.protobuf.Struct`
/// ([`STRUCT_TYPE_URL`]).
///
/// # Errors
///
/// As [`json_to_struct`].
pub fn pack_payload(object: &Map<String, serde_json::Value>) -> Result<Any, PayloadError> {
    Ok(Any {
        type_url: STRUCT_TYPE_URL.to_owned(),
        value: json_to_struct(object)?.encode_to_vec(),
    })
}

/// Unpacks the JSON object from an `Any` made by [`pack_payload`].
///
/// # Errors
///
/// [`PayloadError::UnexpectedType`] unless the type URL is exactly [`STRUCT_TYPE_URL`],
/// [`PayloadError::Malformed`] if the bytes do not decode, and the errors of
/// [`struct_to_json`].
pub fn unpack_payload(any: &Any) -> Result<Map<String, serde_json::Value>, PayloadError> {
    if any.type_url != STRUCT_TYPE_URL {
        return Err(PayloadError::UnexpectedType {
            type_url: any.type_url.clone(),
        });
    }
    let object = Struct::decode(any.value.as_slice()).map_err(PayloadError::Malformed)?;
    struct_to_json(&object)
}

fn too_deep() -> PayloadError {
    PayloadError::TooDeep {
        pointer: String::new(),
        max: MAX_PAYLOAD_DEPTH,
    }
}

/// `depth` is the level of `object` itself (the payload is 1).
fn object_to_struct(
    object: &Map<String, serde_json::Value>,
    depth: usize,
) -> Result<Struct, PayloadError> {
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(too_deep());
    }
    let mut fields = std::collections::BTreeMap::new();
    for (key, value) in object {
        let value = to_proto(value, depth).map_err(|e| e.within(key))?;
        fields.insert(key.clone(), value);
    }
    Ok(Struct { fields })
}

/// `depth` is the level of the container holding `value`.
fn to_proto(value: &serde_json::Value, depth: usize) -> Result<Value, PayloadError> {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(NullValue::NullValue.into()),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(number_to_f64(n)?),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            if depth + 1 > MAX_PAYLOAD_DEPTH {
                return Err(too_deep());
            }
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                values.push(to_proto(item, depth + 1).map_err(|e| e.within(&i.to_string()))?);
            }
            Kind::ListValue(ListValue { values })
        }
        serde_json::Value::Object(object) => {
            Kind::StructValue(object_to_struct(object, depth + 1)?)
        }
    };
    Ok(Value { kind: Some(kind) })
}

fn number_to_f64(n: &Number) -> Result<f64, PayloadError> {
    let out_of_range = || PayloadError::IntegerOutOfRange {
        pointer: String::new(),
    };
    if let Some(i) = n.as_i64() {
        // Safe integers are exact in an f64, so the casts below lose nothing.
        if i.unsigned_abs() <= MAX_SAFE_INTEGER {
            #[allow(clippy::cast_precision_loss)]
            return Ok(i as f64);
        }
        return Err(out_of_range());
    }
    if let Some(u) = n.as_u64() {
        if u <= MAX_SAFE_INTEGER {
            #[allow(clippy::cast_precision_loss)]
            return Ok(u as f64);
        }
        return Err(out_of_range());
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok(f),
        _ => Err(PayloadError::NonFiniteNumber {
            pointer: String::new(),
        }),
    }
}

fn f64_to_number(f: f64) -> Result<Number, PayloadError> {
    #[allow(clippy::cast_precision_loss)]
    const LIMIT: f64 = MAX_SAFE_INTEGER as f64;
    if f.fract() == 0.0 && f.abs() <= LIMIT && !(f == 0.0 && f.is_sign_negative()) {
        // Integral and within ±(2^53 − 1): the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Number::from(f as i64));
    }
    Number::from_f64(f).ok_or(PayloadError::NonFiniteNumber {
        pointer: String::new(),
    })
}

/// `depth` is the level of `object` itself (the payload is 1).
fn struct_to_object(
    object: &Struct,
    depth: usize,
) -> Result<Map<String, serde_json::Value>, PayloadError> {
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(too_deep());
    }
    let mut map = Map::new();
    for (key, value) in &object.fields {
        let value = to_json(value, depth).map_err(|e| e.within(key))?;
        map.insert(key.clone(), value);
    }
    Ok(map)
}

/// `depth` is the level of the container holding `value`.
fn to_json(value: &Value, depth: usize) -> Result<serde_json::Value, PayloadError> {
    let Some(kind) = &value.kind else {
        return Err(PayloadError::MissingKind {
            pointer: String::new(),
        });
    };
    Ok(match kind {
        // Any NullValue number is null: the enum has one member, and proto3 enums are open.
        Kind::NullValue(_) => serde_json::Value::Null,
        Kind::BoolValue(b) => serde_json::Value::Bool(*b),
        Kind::NumberValue(f) => serde_json::Value::Number(f64_to_number(*f)?),
        Kind::StringValue(s) => serde_json::Value::String(s.clone()),
        Kind::ListValue(list) => {
            if depth + 1 > MAX_PAYLOAD_DEPTH {
                return Err(too_deep());
            }
            let mut items = Vec::with_capacity(list.values.len());
            for (i, item) in list.values.iter().enumerate() {
                items.push(to_json(item, depth + 1).map_err(|e| e.within(&i.to_string()))?);
            }
            serde_json::Value::Array(items)
        }
        Kind::StructValue(object) => {
            serde_json::Value::Object(struct_to_object(object, depth + 1)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: serde_json::Value) -> Map<String, serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn scalars_lists_and_objects_round_trip() {
        let payload = object(json!({
            "null": null, "t": true, "f": false, "int": -42, "big": MAX_SAFE_INTEGER,
            "small": -(MAX_SAFE_INTEGER as i64), "float": 1.5, "neg_zero": -0.0,
            "huge": 1e300, "s": "x/y~z", "list": [1, "a", [], {}], "nested": {"a": {"b": [null]}}
        }));
        let any = pack_payload(&payload).unwrap();
        assert_eq!(any.type_url, STRUCT_TYPE_URL);
        assert_eq!(unpack_payload(&any).unwrap(), payload);
    }

    #[test]
    fn an_integral_float_comes_back_as_an_integer() {
        let back = value_to_json(&json_to_value(&json!(2.0)).unwrap()).unwrap();
        assert_eq!(back, json!(2));
        assert!(back.is_i64());
        let big = value_to_json(&json_to_value(&json!(9_007_199_254_740_992.0)).unwrap()).unwrap();
        assert!(
            big.is_f64(),
            "2^53 is past the safe range and stays a float: {big}"
        );
    }

    #[test]
    fn integers_past_two_to_the_53_are_refused_with_their_place() {
        for n in [
            json!(MAX_SAFE_INTEGER + 1),
            json!(-(MAX_SAFE_INTEGER as i64) - 1),
            json!(u64::MAX),
            json!(i64::MIN),
        ] {
            let payload = object(json!({"a": {"b/c": [0, n]}}));
            let err = pack_payload(&payload).unwrap_err();
            assert_eq!(
                err,
                PayloadError::IntegerOutOfRange {
                    pointer: "/a/b~1c/1".into()
                }
            );
            assert!(!err.to_string().contains("9007199254740992"), "{err}");
        }
    }

    #[test]
    fn non_finite_numbers_and_missing_kinds_are_refused() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let v = Value {
                kind: Some(Kind::NumberValue(f)),
            };
            let s = Struct {
                fields: [("n~".to_owned(), v)].into(),
            };
            assert_eq!(
                struct_to_json(&s),
                Err(PayloadError::NonFiniteNumber {
                    pointer: "/n~0".into()
                })
            );
        }
        let s = Struct {
            fields: [("k".to_owned(), Value { kind: None })].into(),
        };
        assert_eq!(
            struct_to_json(&s),
            Err(PayloadError::MissingKind {
                pointer: "/k".into()
            })
        );
    }

    #[test]
    fn another_type_url_or_garbage_bytes_are_typed_errors() {
        let any = Any {
            type_url: "type.googleapis.com/google.protobuf.Duration".into(),
            value: vec![],
        };
        assert_eq!(
            unpack_payload(&any),
            Err(PayloadError::UnexpectedType {
                type_url: "type.googleapis.com/google.protobuf.Duration".into()
            })
        );
        let any = Any {
            type_url: STRUCT_TYPE_URL.into(),
            value: vec![0xff, 0xff, 0xff],
        };
        assert!(matches!(
            unpack_payload(&any),
            Err(PayloadError::Malformed(_))
        ));
    }

    /// `{"a":{"a":…}}` with `levels` objects in all, or arrays when `arrays`.
    fn nested(levels: usize, arrays: bool) -> serde_json::Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = if arrays {
                json!([v])
            } else {
                json!({ "a": v })
            };
        }
        v
    }

    #[test]
    fn the_deepest_payload_allowed_packs_and_decodes_and_one_deeper_is_refused() {
        for arrays in [false, true] {
            // The payload object is level 1, so MAX_PAYLOAD_DEPTH - 1 more levels inside.
            let deepest = object(json!({ "x": nested(MAX_PAYLOAD_DEPTH - 1, arrays) }));
            let any = pack_payload(&deepest).unwrap();
            assert_eq!(unpack_payload(&any).unwrap(), deepest, "arrays: {arrays}");

            let too_deep = object(json!({ "x": nested(MAX_PAYLOAD_DEPTH, arrays) }));
            let err = pack_payload(&too_deep).unwrap_err();
            assert!(
                matches!(
                    err,
                    PayloadError::TooDeep {
                        max: MAX_PAYLOAD_DEPTH,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_struct_nested_past_the_limit_does_not_convert_to_json() {
        let mut s = Struct::default();
        for _ in 0..MAX_PAYLOAD_DEPTH {
            s = Struct {
                fields: [(
                    "a".to_owned(),
                    Value {
                        kind: Some(Kind::StructValue(s)),
                    },
                )]
                .into(),
            };
        }
        let err = struct_to_json(&s).unwrap_err();
        assert!(matches!(err, PayloadError::TooDeep { .. }), "{err:?}");
    }

    #[test]
    fn prost_would_refuse_to_decode_a_payload_only_a_little_deeper_than_allowed() {
        // Why MAX_PAYLOAD_DEPTH is 32: objects cost three prost levels each, so prost's
        // recursion limit (100) is reached a few levels past it. Built as a Struct by hand.
        let mut s = Struct::default();
        let mut levels = 1;
        while Struct::decode(s.encode_to_vec().as_slice()).is_ok() {
            s = Struct {
                fields: [(
                    "a".to_owned(),
                    Value {
                        kind: Some(Kind::StructValue(s)),
                    },
                )]
                .into(),
            };
            levels += 1;
        }
        assert!(
            levels > MAX_PAYLOAD_DEPTH && levels <= MAX_PAYLOAD_DEPTH + 3,
            "prost stops decoding at {levels} levels"
        );
    }
}
