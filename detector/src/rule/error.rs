//! Rule errors that name the file, line, rule and field a rule author must fix.

use std::fmt;
use std::path::PathBuf;

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
            message: message.into(),
        }
    }

    /// Names the field concerned.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Names the rule concerned, unless already named.
    pub fn with_rule(mut self, rule: Option<&str>) -> Self {
        if self.rule.is_none() {
            self.rule = rule.map(str::to_string);
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
            rule: rule.map(str::to_string),
            field: self.field,
            message: self.message,
        }
    }
}
