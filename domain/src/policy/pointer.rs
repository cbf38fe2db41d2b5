//! JSON Pointers (RFC 6901) into an event payload, and [`sanitize`], which removes the
//! fields a `Sanitize` decision names.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// Why a string is not a JSON Pointer a `Sanitize` rule may name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// `""` points at the whole payload: deny instead of sanitising everything.
    #[error("the empty pointer names the whole payload; use a deny rule instead")]
    Root,
    /// A pointer starts with `/`.
    #[error("a JSON pointer starts with `/`")]
    NotAbsolute,
    /// `~` is followed by something other than `0` or `1` (RFC 6901, section 3).
    #[error("`~` at byte {0} is not followed by `0` or `1`")]
    BadEscape(usize),
}

/// A parsed JSON Pointer (RFC 6901), never the root: `/patient/name`, `/a~1b` (the
/// member `a/b`), `/items/0`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<String>,
}

impl JsonPointer {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`PointerError`] if `text` is empty, does not start with `/`, or has an escape
    /// other than `~0` and `~1`.
    pub fn parse(text: &str) -> Result<Self, PointerError> {
        if text.is_empty() {
            return Err(PointerError::Root);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::NotAbsolute);
        };
        let mut tokens = Vec::new();
        let mut offset = 1;
        for raw in rest.split('/') {
            tokens.push(unescape(raw, offset)?);
            offset += raw.len() + 1;
        }
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pointer as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The reference tokens, unescaped (`~1` → `/`, `~0` → `~`).
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(String::as_str)
    }

    /// Removes what the pointer names from `value`: an object member is removed, an
    /// array element is replaced by `null` (so the indices other pointers name keep
    /// their meaning). Returns whether something was there. A pointer that names
    /// nothing (a missing member, an index out of range, a path through a scalar) is
    /// not an error.
    pub fn remove_from(&self, value: &mut Value) -> bool {
        let Some((last, parents)) = self.tokens.split_last() else {
            return false;
        };
        let mut current = value;
        for token in parents {
            let next = match current {
                Value::Object(map) => map.get_mut(token.as_str()),
                Value::Array(items) => array_index(token).and_then(|i| items.get_mut(i)),
                _ => None,
            };
            match next {
                Some(v) => current = v,
                None => return false,
            }
        }
        match current {
            Value::Object(map) => map.remove(last.as_str()).is_some(),
            Value::Array(items) => match array_index(last).and_then(|i| items.get_mut(i)) {
                Some(slot) => {
                    *slot = Value::Null;
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for JsonPointer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Removes every field `fields` names from `payload` (see
/// [`JsonPointer::remove_from`]) and returns how many were present. Missing fields
/// are fine: a payload that never carried them is already sanitised.
pub fn sanitize(payload: &mut Value, fields: &[JsonPointer]) -> usize {
    fields.iter().filter(|p| p.remove_from(payload)).count()
}

fn unescape(raw: &str, offset: usize) -> Result<String, PointerError> {
    if !raw.contains('~') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some((_, '0')) => out.push('~'),
                Some((_, '1')) => out.push('/'),
                _ => return Err(PointerError::BadEscape(offset + i)),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// An array index as RFC 6901 writes it: `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if valid { token.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> JsonPointer {
        JsonPointer::parse(s).expect("valid pointer")
    }

    #[test]
    fn parse_rejects_root_relative_and_bad_escapes() {
        assert_eq!(JsonPointer::parse(""), Err(PointerError::Root));
        assert_eq!(JsonPointer::parse("a/b"), Err(PointerError::NotAbsolute));
        assert_eq!(JsonPointer::parse("/a~2"), Err(PointerError::BadEscape(2)));
        assert_eq!(
            JsonPointer::parse("/ok/a~"),
            Err(PointerError::BadEscape(5))
        );
        assert_eq!(p("/a~1b/~0c").tokens().collect::<Vec<_>>(), ["a/b", "~c"]);
        assert_eq!(p("/").tokens().collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn removes_members_masks_elements_and_ignores_missing() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "list": [10, 11, 12], "a/b": 3, "": 4, "s": "x"});
        assert!(p("/a/b").remove_from(&mut v));
        assert!(p("/list/1").remove_from(&mut v));
        assert!(p("/a~1b").remove_from(&mut v));
        assert!(p("/").remove_from(&mut v));
        assert!(!p("/missing/deep").remove_from(&mut v));
        assert!(!p("/list/7").remove_from(&mut v));
        assert!(!p("/list/01").remove_from(&mut v));
        assert!(!p("/list/-").remove_from(&mut v));
        assert!(!p("/s/x").remove_from(&mut v));
        assert_eq!(v, json!({"a": {"c": 2}, "list": [10, null, 12], "s": "x"}));
    }

    #[test]
    fn sanitize_counts_what_was_present() {
        let mut v = json!({"x": 1, "y": [1, 2]});
        assert_eq!(sanitize(&mut v, &[p("/x"), p("/x"), p("/y/0"), p("/z")]), 2);
        assert_eq!(v, json!({"y": [null, 2]}));
    }
}
