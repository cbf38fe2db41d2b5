//! The policy file: JSON, parsed with `serde_json`, every error placed at a line and
//! column and, inside a rule, naming that rule.
//!
//! ```json
//! {"version": 1, "untagged": "publisher_classification",
//!  "rules": [{"id": "...", "data_traits": ["..."], "target": {...},
//!   "effect": "allow", "reason": "...", "otherwise_deny": "..."}]}
//! ```
//!
//! `untagged` is optional (`publisher_classification`, `public` or `deny`; see
//! [`super::Untagged`]).

use serde::Deserialize;
use serde_json::Value;

use super::Untagged;
use super::rules::{
    PolicyError, PolicyErrorKind, Position, Rule, RuleEffect, TargetCondition, rule_label,
};

/// The policy file format version this engine reads.
pub const POLICY_FILE_VERSION: u32 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    #[serde(default)]
    #[allow(dead_code, reason = "operators' notes, read and ignored")]
    description: Option<String>,
    #[serde(default)]
    untagged: Untagged,
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    #[serde(default)]
    description: Option<String>,
    data_traits: Vec<String>,
    #[serde(default)]
    target: RawTarget,
    effect: String,
    #[serde(default)]
    fields: Option<Vec<String>>,
    reason: String,
    #[serde(default)]
    otherwise_deny: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    traits: Vec<String>,
    #[serde(default)]
    classification: Vec<String>,
    #[serde(default)]
    forbid_traits: Vec<String>,
}

/// Parses a policy file into its rules, checking its shape and the effect/fields
/// pairing (the remaining checks run when the rules are compiled). Errors carry a
/// position in `text`.
pub(crate) fn parse_rules(text: &str) -> Result<Vec<Rule>, PolicyError> {
    parse_file(text).map(|(rules, _)| rules)
}

/// [`parse_rules`], and the file's `untagged` setting (its default when absent).
pub(crate) fn parse_file(text: &str) -> Result<(Vec<Rule>, Untagged), PolicyError> {
    let raw: RawFile = serde_json::from_str(text).map_err(|e| serde_error(text, &e))?;
    if raw.version != POLICY_FILE_VERSION {
        return Err(locate(
            text,
            PolicyError::new(
                PolicyErrorKind::UnsupportedVersion,
                "/version".to_owned(),
                format!(
                    "policy file version {} is not supported, expected {POLICY_FILE_VERSION}",
                    raw.version
                ),
            ),
        ));
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let effect =
            effect(i, &r.effect, r.fields).map_err(|e| locate(text, e.for_rule(i, Some(&r.id))))?;
        rules.push(Rule {
            id: r.id,
            description: r.description,
            data_traits: r.data_traits,
            target: TargetCondition {
                traits: r.target.traits,
                classification: r.target.classification,
                forbid_traits: r.target.forbid_traits,
            },
            effect,
            reason: r.reason,
            otherwise_deny: r.otherwise_deny,
        });
    }
    Ok((rules, raw.untagged))
}

/// Parses bytes: UTF-8 first, then [`parse_file`].
pub(crate) fn parse_file_bytes(bytes: &[u8]) -> Result<(Vec<Rule>, Untagged), PolicyError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_file(text),
        Err(e) => {
            let mut err = PolicyError::new(
                PolicyErrorKind::NotUtf8,
                String::new(),
                "the policy file is not UTF-8",
            );
            err.position = Some(position_of(bytes, e.valid_up_to()));
            Err(err)
        }
    }
}

fn effect(i: usize, name: &str, fields: Option<Vec<String>>) -> Result<RuleEffect, PolicyError> {
    let effect = match name {
        "allow" => RuleEffect::Allow,
        "deny" => RuleEffect::Deny,
        // An empty or missing list is refused by the rule checks, with its own code.
        "sanitize" => {
            return Ok(RuleEffect::Sanitize {
                fields: fields.unwrap_or_default(),
            });
        }
        _ => {
            return Err(PolicyError::new(
                PolicyErrorKind::UnknownEffect,
                format!("/rules/{i}/effect"),
                "unknown effect, expected `allow`, `deny` or `sanitize`",
            ));
        }
    };
    if fields.is_some() {
        return Err(PolicyError::new(
            PolicyErrorKind::FieldsWithoutSanitize,
            format!("/rules/{i}/fields"),
            format!("`fields` belongs on a sanitize rule, this one is `{name}`"),
        ));
    }
    Ok(effect)
}

/// Adds the position of `err.path` in `text` (or of the deepest member of it that
/// exists: a missing member is reported where its object is).
pub(crate) fn locate(text: &str, mut err: PolicyError) -> PolicyError {
    let tokens: Vec<String> = err
        .path
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let offset = Scanner::new(text).find(&tokens);
    err.position = Some(position_of(text.as_bytes(), offset));
    err
}

fn serde_error(text: &str, e: &serde_json::Error) -> PolicyError {
    let kind = if e.is_syntax() || e.is_eof() {
        PolicyErrorKind::Syntax
    } else {
        PolicyErrorKind::Structure
    };
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    let mut err = PolicyError::new(kind, String::new(), message);
    err.position = Some(Position {
        line: e.line().max(1),
        column: e.column().max(1),
    });
    if kind == PolicyErrorKind::Structure {
        // Valid JSON of the wrong shape: say which rule the position falls in.
        let offset = offset_of(text.as_bytes(), e.line(), e.column());
        let spans = Scanner::new(text)
            .element_spans(&["rules".to_owned()])
            .unwrap_or_default();
        if let Some(i) = spans
            .iter()
            .position(|&(s, end)| s <= offset && offset <= end)
        {
            let id = serde_json::from_str::<Value>(text).ok().and_then(|v| {
                v.pointer(&format!("/rules/{i}/id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            err.rule = Some(rule_label(i, id.as_deref()));
            err.path = format!("/rules/{i}");
        }
    }
    err
}

/// 1-based line and byte column of `offset`.
fn position_of(bytes: &[u8], offset: usize) -> Position {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    Position {
        line,
        column: before.len() - line_start + 1,
    }
}

/// The byte offset of a `serde_json` (line, column): the byte the column counts.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes
            .get(start..)
            .and_then(|b| b.iter().position(|&c| c == b'\n'))
        {
            Some(p) => start += p + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(bytes.len())
}

/// A forward scanner over JSON text that serde_json has already accepted, finding the
/// byte offset of a member. Defensive all the same: any surprise ends the search.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            b: text.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    /// The offset of the value at `tokens`, or of the deepest one of its ancestors
    /// that exists.
    fn find(&mut self, tokens: &[String]) -> usize {
        self.ws();
        let mut found = self.i;
        for token in tokens {
            if self.enter(token).is_none() {
                break;
            }
            self.ws();
            found = self.i;
        }
        found
    }

    /// Moves from the start of an object or array to the start of its member
    /// `token`.
    fn enter(&mut self, token: &str) -> Option<()> {
        match self.peek()? {
            b'{' => {
                self.i += 1;
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    self.ws();
                    if key == token {
                        return Some(());
                    }
                    self.skip_value()?;
                    self.eat(b',')?;
                }
            }
            b'[' => {
                let index: usize = token.parse().ok()?;
                self.i += 1;
                for _ in 0..index {
                    self.ws();
                    self.skip_value()?;
                    self.eat(b',')?;
                }
                self.ws();
                (self.peek() != Some(b']')).then_some(())
            }
            _ => None,
        }
    }

    /// Start and end offsets of each element of the array at `tokens`.
    fn element_spans(&mut self, tokens: &[String]) -> Option<Vec<(usize, usize)>> {
        self.ws();
        for token in tokens {
            self.enter(token)?;
            self.ws();
        }
        if self.peek()? != b'[' {
            return None;
        }
        self.i += 1;
        let mut spans = Vec::new();
        loop {
            self.ws();
            if self.peek()? == b']' {
                return Some(spans);
            }
            let start = self.i;
            self.skip_value()?;
            spans.push((start, self.i));
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => return Some(spans),
                _ => return None,
            }
        }
    }

    /// Reads a string at the cursor, decoding escapes (`\uXXXX` outside the BMP
    /// becomes U+FFFD: such keys never name a policy member).
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    let decoded = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4)?;
                            self.i += 4;
                            let code =
                                u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        self.i += 1; // the opening quote
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    /// Skips one value (iteratively: no recursion, whatever the nesting).
    fn skip_value(&mut self) -> Option<()> {
        let mut depth: usize = 0;
        loop {
            self.ws();
            match self.peek()? {
                b'"' => self.skip_string()?,
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                    continue;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                }
                b',' | b':' if depth > 0 => {
                    self.i += 1;
                    continue;
                }
                b',' | b':' => return None,
                _ => {
                    while !matches!(
                        self.peek(),
                        None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                    ) {
                        self.i += 1;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_members_and_the_deepest_existing_ancestor() {
        let text = "{\n  \"a\": [1, {\"b\": \"x\"}],\n  \"c\\u0064\": {\"e\": [true, null]}\n}";
        let at = |path: &[&str]| {
            let tokens: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
            let p = position_of(text.as_bytes(), Scanner::new(text).find(&tokens));
            (p.line, p.column)
        };
        assert_eq!(at(&["a", "1", "b"]), (2, 18));
        assert_eq!(at(&["cd", "e", "1"]), (3, 27));
        // Missing members: the deepest ancestor that exists.
        assert_eq!(at(&["a", "1", "zz"]), (2, 12));
        assert_eq!(at(&["a", "5"]), (2, 8));
        assert_eq!(at(&[]), (1, 1));
    }

    #[test]
    fn element_spans_cover_each_element() {
        let text = r#"{"x": 1, "rules": [ {"a": [1]} , "s,]" ,3]}"#;
        let spans = Scanner::new(text)
            .element_spans(&["rules".to_owned()])
            .expect("an array");
        let parts: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(parts, [r#"{"a": [1]}"#, r#""s,]""#, "3"]);
    }

    #[test]
    fn offsets_and_positions_round_trip() {
        let text = b"ab\ncd\n\nef";
        for offset in 0..text.len() {
            let p = position_of(text, offset);
            assert_eq!(offset_of(text, p.line, p.column), offset);
        }
    }
}
