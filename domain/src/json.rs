//! JSON text whose objects name each member once.
//!
//! `serde_json` keeps the last of two members with one name (`{"traits": [],
//! "traits": ["handles_phi"]}` reads as the second), while another parser — a proxy, a
//! plugin's SDK, an auditor's tool — may keep the first. A body read two ways can be
//! validated as one thing and acted on as another, so the core refuses such text:
//! [`from_slice`] is `serde_json::from_slice` into a [`Value`], refusing a repeated
//! member name at any depth and naming it by its JSON pointer. It builds the value in
//! the same single pass (a repeat is seen when the member is inserted), with
//! `serde_json`'s own limits (nesting depth 128).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a text is not JSON with unique member names. The message names the place (a
/// line and column, or the JSON pointer of a repeated member), never a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

impl JsonError {
    /// Whether the text was JSON but repeated a member name.
    #[must_use]
    pub fn is_duplicate(&self) -> bool {
        self.0.starts_with(DUPLICATE)
    }
}

const DUPLICATE: &str = "duplicate member ";

/// Longest pointer an error names; a longer one is cut (and ends in `…`).
const MAX_POINTER_CHARS: usize = 120;

/// Parses `bytes` as one JSON value, refusing an object that names a member twice.
///
/// # Errors
/// [`JsonError`]: not JSON (serde_json's message, with its line and column), or a
/// repeated member (`duplicate member `/security/data_classification``).
pub fn from_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Unique(None)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| JsonError(e.to_string()))?;
    Ok(value)
}

/// [`from_slice`] of a string.
///
/// # Errors
/// As [`from_slice`].
pub fn from_str(text: &str) -> Result<Value, JsonError> {
    from_slice(text.as_bytes())
}

/// One step of the path from the root to the value being read.
enum Step<'a> {
    Member(&'a str),
    Index(usize),
}

/// Where a value sits: its step and its parent's place (`None`: the root).
struct Place<'a> {
    parent: Option<&'a Place<'a>>,
    step: Step<'a>,
}

/// The JSON pointer of `member` in the object at `at`.
fn pointer(at: Option<&Place<'_>>, member: &str) -> String {
    let mut steps = vec![member.replace('~', "~0").replace('/', "~1")];
    let mut cursor = at;
    while let Some(place) = cursor {
        steps.push(match place.step {
            Step::Member(name) => name.replace('~', "~0").replace('/', "~1"),
            Step::Index(i) => i.to_string(),
        });
        cursor = place.parent;
    }
    let mut out = String::new();
    for step in steps.iter().rev() {
        out.push('/');
        out.push_str(step);
    }
    let mut shown: String = out.escape_debug().collect();
    if shown.chars().count() > MAX_POINTER_CHARS {
        shown = shown.chars().take(MAX_POINTER_CHARS).collect();
        shown.push('…');
    }
    shown
}

/// Reads a value at a place, refusing repeated member names in it and below it.
#[derive(Clone, Copy)]
struct Unique<'a>(Option<&'a Place<'a>>);

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let place = Place {
                parent: self.0,
                step: Step::Index(items.len()),
            };
            match seq.next_element_seed(Unique(Some(&place)))? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = {
                let place = Place {
                    parent: self.0,
                    step: Step::Member(&name),
                };
                map.next_value_seed(Unique(Some(&place)))?
            };
            match members.entry(name) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(held) => {
                    return Err(de::Error::custom(format!(
                        "{DUPLICATE}`{}`",
                        pointer(self.0, held.key())
                    )));
                }
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_what_serde_json_parses() {
        for text in [
            r#"{"a": 1, "b": [1, 2.5, -3, "x", null, true, {"c": {}}], "d": {"e": []}}"#,
            "[]",
            "7",
            r#""s""#,
            "null",
            r#"{"a~b/c": 18446744073709551615, "n": -9223372036854775808, "f": 1e300}"#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_str(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn a_repeated_member_is_refused_with_its_pointer() {
        for (text, at) in [
            (r#"{"traits": [], "traits": ["handles_phi"]}"#, "/traits"),
            (
                r#"{"security": {"data_classification": [], "data_classification": ["phi"]}}"#,
                "/security/data_classification",
            ),
            (r#"{"a": [{"x": 1}, {"y": 1, "y": 2}]}"#, "/a/1/y"),
            (r#"{"a/b": {"c~d": 1, "c~d": 1}}"#, "/a~1b/c~0d"),
            (r#"[[{"": 1, "": 1}]]"#, "/0/0/"),
        ] {
            let e = from_str(text).unwrap_err();
            assert!(e.is_duplicate(), "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("duplicate member `{at}`")),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn equal_names_in_different_objects_are_fine() {
        let v = from_str(r#"{"a": {"id": 1}, "b": {"id": 2}, "id": 3}"#).unwrap();
        assert_eq!(v, json!({"a": {"id": 1}, "b": {"id": 2}, "id": 3}));
    }

    #[test]
    fn bad_text_is_an_error_not_a_duplicate() {
        for text in ["", "{", r#"{"a": 1,}"#, "[1] 2", r#"{"a" 1}"#] {
            let e = from_str(text).unwrap_err();
            assert!(!e.is_duplicate(), "{text}: {e}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(from_str(&deep).is_err(), "serde_json's depth limit holds");
    }

    #[test]
    fn a_long_pointer_is_cut_and_escaped() {
        let name = "n\u{7}".repeat(200);
        let text = format!(r#"{{"{name}": 1, "{name}": 2}}"#);
        let e = from_str(&text.replace('\u{7}', "\\u0007"))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 400, "{e}");
        assert!(!e.contains('\u{7}'), "control characters are escaped: {e}");
    }
}
