//! Validation of `event_type`: dot-separated segments of `[A-Za-z0-9_-]+`, the grammar
//! `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`, at most [`MAX_EVENT_TYPE_LEN`] bytes, checked
//! by hand (no regex engine). Names are compared case-sensitively: `UserCreated` and
//! `usercreated` are two event types.

/// Longest event type, in bytes (all of them ASCII).
pub const MAX_EVENT_TYPE_LEN: usize = 255;

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
    /// Longer than [`MAX_EVENT_TYPE_LEN`] bytes.
    #[error("event type is longer than {MAX_EVENT_TYPE_LEN} characters")]
    TooLong,
    /// A character outside `A-Z`, `a-z`, `0-9`, `_`, `-` and `.`.
    #[error(
        "event type has {found:?} at byte {index}; allowed are A-Z, a-z, 0-9, '_' and '-' in dot-separated segments"
    )]
    InvalidCharacter {
        /// Byte offset of the character.
        index: usize,
        /// The character found there.
        found: char,
    },
}

/// Checks that `event_type` matches `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$` and is at most
/// [`MAX_EVENT_TYPE_LEN`] bytes, e.g. `user.created`, `billing.invoice-paid_v2` or
/// `NotificationSent`.
///
/// # Errors
///
/// Returns the first violation: [`EventTypeError::Empty`] for `""`,
/// [`EventTypeError::EmptySegment`] for a leading, trailing or doubled `.`, and
/// [`EventTypeError::InvalidCharacter`] for anything else outside the grammar
/// (spaces, `*`, `>`, non-ASCII, …), and [`EventTypeError::TooLong`] for a valid-looking
/// name over the length limit.
pub fn validate_event_type(event_type: &str) -> Result<(), EventTypeError> {
    if event_type.is_empty() {
        return Err(EventTypeError::Empty);
    }
    let mut segment_start = 0;
    for (index, found) in event_type.char_indices() {
        match found {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => {}
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
    if event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(EventTypeError::TooLong);
    }
    Ok(())
}

/// `true` if [`validate_event_type`] accepts `event_type`.
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
            "NotificationSent",
            "Billing.InvoicePaid",
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
                "User.créé",
                InvalidCharacter {
                    index: 7,
                    found: 'é',
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
        let longest = "A".repeat(MAX_EVENT_TYPE_LEN);
        assert_eq!(validate_event_type(&longest), Ok(()));
        assert_eq!(validate_event_type(&format!("{longest}b")), Err(TooLong));
        assert_eq!(
            validate_event_type(&format!("{longest}.")),
            Err(EmptySegment {
                index: MAX_EVENT_TYPE_LEN + 1
            })
        );
    }
}
