//! Text output: terminal-safe strings and aligned tables.

use std::borrow::Cow;
use std::io::Write;

/// `s` with control characters escaped (`\u{1b}`), so that a string a plugin chose
/// (a manifest's name, a member's key in a violation path) cannot drive the terminal.
pub fn safe(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_unicode().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Renders `rows` under `header` in left-aligned columns two spaces apart, with no
/// trailing spaces. Cells are made terminal-safe.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| (*h).to_owned()).collect())
        .chain(
            rows.iter()
                .map(|r| r.iter().map(|c| safe(c).into_owned()).collect()),
        )
        .collect();
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            cells
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Writes `text` to standard output, flushed.
///
/// # Errors
/// Writing failed (e.g. a closed pipe).
pub fn write_out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(safe("plain name"), "plain name");
        assert_eq!(safe("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(safe("two\nlines"), "two\\u{a}lines");
    }

    #[test]
    fn columns_align_without_trailing_spaces() {
        let t = table(
            &["ID", "STATUS", "NOTE"],
            &[
                vec!["a".into(), "active".into(), String::new()],
                vec!["longer-id".into(), "registered".into(), "x".into()],
            ],
        );
        assert_eq!(
            t,
            "ID         STATUS      NOTE\n\
             a          active\n\
             longer-id  registered  x\n"
        );
    }
}
