//! Peer-supplied text made safe for logs.
//!
//! A peer chooses its uid, its refusal reasons and (through decode errors) parts
//! of our error messages. Written raw, a newline forges a log line and an escape
//! sequence drives the reader's terminal, before the peer has proved anything.
//! [`Escaped`] writes control characters as Rust escapes (`\n`, `\u{1b}`), and
//! leaves every other character, including non-ASCII text, as it is.

use std::fmt;

/// Displays its content with control characters escaped; see the module docs.
///
/// Formatting never fails on its own; it fails only if the underlying
/// formatter does.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        write!(EscapeWriter(f), "{}", self.0)
    }
}

/// Forwards text to a formatter, escaping control characters on the way.
struct EscapeWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapeWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Write runs of harmless characters in one call; escape the rest.
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if c.is_control() {
                self.0.write_str(&s[start..i])?;
                for e in c.escape_default() {
                    self.0.write_char(e)?;
                }
                start = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[start..])
    }
}

/// `s` with control characters escaped, as [`Escaped`] displays it.
pub fn escape_for_log(s: &str) -> String {
    Escaped(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_for_log("plain name"), "plain name");
        assert_eq!(escape_for_log("a\nb\r\x1b[2J\t\0"), r"a\nb\r\u{1b}[2J\t\u{0}");
        assert_eq!(escape_for_log("ünïcode ✓"), "ünïcode ✓");
        assert_eq!(escape_for_log("\u{9b}31m"), r"\u{9b}31m");
        assert_eq!(Escaped(format_args!("x={}", "\n")).to_string(), r"x=\n");
    }
}
