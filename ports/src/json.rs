//! Compact JSON written directly, byte for byte what `serde_json` writes, with a fast
//! path for text that needs no escaping.
//!
//! `serde_json`'s serializer looks every byte of every string up in its escape table
//! and writes the runs between escapes one by one; most text (ids, names, dates, paths,
//! tokens) needs no escaping at all. Here a string is checked eight bytes at a time and,
//! when nothing in it needs escaping, copied whole. The gain is modest (a registration's
//! manifest text and token claims: about 1,000 fewer instructions, see
//! `docs/PERFORMANCE.md`); the escaping is also what the server's log lines use.

use std::fmt::{self, Write};

use serde_json::Value;

/// Writes `s` as the inside of a JSON string (without quotes), escaped exactly as
/// `serde_json` escapes it: `"` `\` and the control characters, with the short forms
/// `\b \f \n \r \t` where they exist and `\u00XX` otherwise.
///
/// # Errors
/// Only those of `out`.
pub fn write_escaped<W: Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    if !needs_escaping(s.as_bytes()) {
        return out.write_str(s);
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Every escaped byte is ASCII, so `i` and `i + 1` are character boundaries.
        out.write_str(&s[start..i])?;
        if escaped.is_empty() {
            write!(out, "\\u{b:04x}")?;
        } else {
            out.write_str(escaped)?;
        }
        start = i + 1;
    }
    out.write_str(&s[start..])
}

/// Whether any byte of `s` is `"`, `\` or a control character, eight bytes at a time
/// (most strings are short, too short for the compiler's vector loops).
fn needs_escaping(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `x` is below `n` (n <= 0x80); exact, no false positives.
    let any_below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let any_equal = |x: u64, b: u8| any_below(x ^ (ONES * u64::from(b)), 1);
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        if any_below(x, 0x20) || any_equal(x, b'"') || any_equal(x, b'\\') {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| special(b))
}

/// Appends `s` as a JSON string, quotes included.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    // Writing to a `String` cannot fail.
    let _ = write_escaped(out, s);
    out.push('"');
}

/// Appends `value` as compact JSON: the same text as `serde_json::to_string(value)`.
pub fn push_compact(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // `Number`'s `Display` is its serialisation (itoa and ryu, as `serde_json`).
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_compact(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, k);
                out.push(':');
                push_compact(out, v);
            }
            out.push('}');
        }
    }
}

/// `value` as compact JSON: the same text as `serde_json::to_string(value)`.
pub fn to_compact(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    push_compact(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn every_escape_is_written_as_serde_json_writes_it() {
        let all_ascii: String = (0u8..=0x7f).map(char::from).collect();
        for s in [
            "",
            "plain text",
            "q\"uote\\back/slash",
            "\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}",
            "é ☃ 😀 \u{2028}\u{2029}",
            all_ascii.as_str(),
        ] {
            let mut out = String::new();
            push_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn escaping_is_needed_exactly_where_a_special_byte_is() {
        // Every position within and after the eight-byte words, every byte value.
        for len in 1..=19 {
            for at in 0..len {
                for b in 0u8..=0x7f {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let special = b < 0x20 || b == b'"' || b == b'\\';
                    assert_eq!(needs_escaping(&bytes), special, "{len} {at} {b:#x}");
                }
            }
        }
        // Bytes of multi-byte characters are never special.
        assert!(!needs_escaping("é☃😀ÿ\u{80}".as_bytes()));
    }

    #[test]
    fn numbers_and_nesting_are_written_as_serde_json_writes_them() {
        let v = json!({
            "z": [1, -2, 18_446_744_073_709_551_615u64, -9_223_372_036_854_775_808i64,
                  0.5, 1e300, -1.5e-7, 100.0, 1e21],
            "a": {"": null, "t": true, "f": false, "e": [], "o": {}},
            "é": "x\"y"
        });
        assert_eq!(to_compact(&v), serde_json::to_string(&v).unwrap());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn compact_text_is_serde_jsons(v in any_value()) {
            prop_assert_eq!(to_compact(&v), serde_json::to_string(&v).unwrap());
        }
    }
}
