//! Rule errors that name the file, line, rule and field a rule author must fix.

use std::fmt;
use std::path::PathBuf;

/// How many characters of an offending input a message quotes (rule text may be hostile: a
/// 1 MiB regex or a 4 MB condition must not end up in a log line).
pub const EXCERPT_CHARS: usize = crate::escape::SHOWN_CHARS;

/// Longest message kept; longer ones (which can only come from quoting input) are cut.
pub const MAX_MESSAGE_CHARS: usize = 600;

/// `text` cut to [`EXCERPT_CHARS`] characters (`…` and how many more when something was left
/// out), control characters escaped so a quoted name cannot forge a log line.
pub fn excerpt(text: &str) -> String {
    crate::escape::shown(text, EXCERPT_CHARS)
}

/// `text` cut to `max` characters (on a character boundary), with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// A rule that could not be loaded or compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule file.
    pub file: PathBuf,
    /// 1-based line of the offending node (0 when unknown).
    pub line: usize,
    /// The rule's id or title, once known.
    pub rule: Option<String>,
    /// The detection field or key concerned, if any.
    pub field: Option<String>,
    /// What is wrong, in words a rule author can act on.
    pub message: String,
}

impl RuleError {
    /// An error at `line` of `file`.
    pub fn new(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        RuleError {
            file: file.into(),
            line,
            rule: None,
            field: None,
            message: cut(&message.into(), MAX_MESSAGE_CHARS),
        }
    }

    /// Names the field concerned.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(excerpt(&field.into()));
        self
    }

    /// Names the rule concerned, unless already named.
    pub fn with_rule(mut self, rule: Option<&str>) -> Self {
        if self.rule.is_none() {
            self.rule = rule.map(excerpt);
        }
        self
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ": rule '{rule}'")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field '{field}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RuleError {}

/// An error without a file yet; the loader adds the file and rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

impl Located {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Located {
            line,
            field: None,
            message: message.into(),
        }
    }

    pub fn field(mut self, field: &str) -> Self {
        if self.field.is_none() {
            self.field = Some(field.to_string());
        }
        self
    }

    pub fn into_rule_error(self, file: &std::path::Path, rule: Option<&str>) -> RuleError {
        RuleError {
            file: file.to_path_buf(),
            line: self.line,
            rule: rule.map(excerpt),
            field: self.field.as_deref().map(excerpt),
            message: cut(&self.message, MAX_MESSAGE_CHARS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_character_boundaries_and_escape_controls() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(200);
        let e = excerpt(&long);
        assert!(
            e.starts_with(&format!("{}…", "é".repeat(EXCERPT_CHARS))),
            "{e}"
        );
        assert!(e.ends_with("(120 more characters)"), "{e}");
        assert_eq!(excerpt("sel\n== forged"), "sel\\u{a}== forged");
        let e = cut(&"é".repeat(700), MAX_MESSAGE_CHARS);
        assert_eq!(e.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(
            excerpt(&"x".repeat(EXCERPT_CHARS)),
            "x".repeat(EXCERPT_CHARS)
        );
    }

    #[test]
    fn a_huge_message_field_or_rule_is_cut() {
        let big = "a".repeat(1 << 20);
        let e = RuleError::new("f.yml", 3, big.clone())
            .with_field(big.clone())
            .with_rule(Some(&big));
        let text = e.to_string();
        assert!(text.len() < 1_000, "{} bytes", text.len());
        assert!(text.starts_with("f.yml:3: rule 'aaaa"), "{text}");
        let e = Located::new(1, big.clone())
            .field(&big)
            .into_rule_error(std::path::Path::new("g.yml"), Some(&big));
        assert!(e.to_string().len() < 1_000);
    }
}
