//! Text from events and rules on its way to a terminal or a log.
//!
//! Values an attacker can write (a user name, a bucket name, an EventBridge `detail-type`, a
//! rule's pattern) must not forge output: control characters (escape sequences, newlines,
//! carriage returns) and the Unicode controls that reorder or hide text are written as
//! `\u{..}` escapes, and long values are cut, so an error message never echoes a megabyte.

use std::fmt::Write;

/// How many characters of an offending value messages show.
pub const SHOWN_CHARS: usize = 80;

/// How many characters of one message reach a terminal or a log line.
pub const LINE_CHARS: usize = 2000;

/// A message for a terminal or a log line: escaped and cut at [`LINE_CHARS`].
pub fn line(message: &str) -> String {
    shown(message, LINE_CHARS)
}

/// `text` safe for a terminal or a log line: controls escaped, at most `max` characters kept
/// (then `…` and how many more there were).
pub fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2) + 16);
    for (count, c) in text.chars().enumerate() {
        if count == max {
            let rest = text.chars().count() - max;
            let _ = write!(out, "… ({rest} more characters)");
            return out;
        }
        if is_hostile(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that move the cursor, end a line, or reorder or hide the text around them.
fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width and direction marks
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_kept() {
        assert_eq!(shown("AWS API Call", 80), "AWS API Call");
        assert_eq!(
            shown("x\n== summary: 0 alerts\u{1b}[2J", 80),
            "x\\u{a}== summary: 0 alerts\\u{1b}[2J"
        );
        assert_eq!(shown("evil\u{202e}gpj.exe", 80), "evil\\u{202e}gpj.exe");
        assert_eq!(shown("café 東京", 80), "café 東京");
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(1_000_000);
        let s = shown(&long, 5);
        assert_eq!(s, "ééééé… (999995 more characters)");
    }
}
