//! Validation of `event_type`: dot-separated segments of `[a-z0-9_-]+`, the grammar
//! `^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`, checked by hand (no regex engine).

/// Why a string is not a valid `event_type`.
///
/// Byte offsets point into the rejected string; the messages never repeat it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventTypeError {
    /// The string is empty.
    #[error("event type is empty")]
    Empty,
    /// A segment is empty: a leading, trailing or doubled `.`.
    #[error("event type has an empty segment at byte {index} (a leading, trailing or doubled '.')")]
    EmptySegment {
        /// Byte offset where the empty segment starts.
        index: usize,
    },
    /// A character outside `a-z`, `0-9`, `_`, `-` and `.`.
    #[error(
        "event type has {found:?} at byte {index}; allowed are a-z, 0-9, '_' and '-' in dot-separated segments"
    )]
    InvalidCharacter {
        /// Byte offset of the character.
        index: usize,
        /// The character found there.
        found: char,
    },
}

/// Checks that `event_type` matches `^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`, e.g. `user.created`
/// or `billing.invoice-paid_v2`.
///
/// # Errors
///
/// Returns the first violation: [`EventTypeError::Empty`] for `""`,
/// [`EventTypeError::EmptySegment`] for a leading, trailing or doubled `.`, and
/// [`EventTypeError::InvalidCharacter`] for anything else outside the grammar
/// (upper case, spaces, `*`, `>`, non-ASCII, …).
pub fn validate_event_type(event_type: &str) -> Result<(), EventTypeError> {
    if event_type.is_empty() {
        return Err(EventTypeError::Empty);
    }
    let mut segment_start = 0;
    for (index, found) in event_type.char_indices() {
        match found {
            'a'..='z' | '0'..='9' | '_' | '-' => {}
            '.' => {
                if index == segment_start {
                    return Err(EventTypeError::EmptySegment { index });
                }
                segment_start = index + 1;
            }
            _ => return Err(EventTypeError::InvalidCharacter { index, found }),
        }
    }
    if segment_start == event_type.len() {
        return Err(EventTypeError::EmptySegment {
            index: segment_start,
        });
    }
    Ok(())
}

/// `true` if `event_type` matches `^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`.
#[must_use]
pub fn is_valid_event_type(event_type: &str) -> bool {
    validate_event_type(event_type).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        for ok in [
            "a",
            "user.created",
            "billing.invoice-paid_v2",
            "0.1.2",
            "_",
            "-",
            "a-b_c.d",
        ] {
            assert_eq!(validate_event_type(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else_with_the_place() {
        use EventTypeError::*;
        let cases = [
            ("", Empty),
            (".a", EmptySegment { index: 0 }),
            ("a.", EmptySegment { index: 2 }),
            ("a..b", EmptySegment { index: 2 }),
            (".", EmptySegment { index: 0 }),
            (
                "User.created",
                InvalidCharacter {
                    index: 0,
                    found: 'U',
                },
            ),
            (
                "user created",
                InvalidCharacter {
                    index: 4,
                    found: ' ',
                },
            ),
            (
                "user.*",
                InvalidCharacter {
                    index: 5,
                    found: '*',
                },
            ),
            (
                "user.>",
                InvalidCharacter {
                    index: 5,
                    found: '>',
                },
            ),
            (
                "é",
                InvalidCharacter {
                    index: 0,
                    found: 'é',
                },
            ),
            (
                "a\0",
                InvalidCharacter {
                    index: 1,
                    found: '\0',
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(validate_event_type(input), Err(want), "{input:?}");
            assert!(!is_valid_event_type(input));
        }
    }
}
