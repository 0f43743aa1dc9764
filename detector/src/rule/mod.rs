//! Sigma rules: YAML to an AST of searches and a condition, with errors a rule author can act on.

pub mod condition;
pub mod correlation;
mod error;
pub mod first_seen;
pub mod limits;
pub mod lint;
pub mod parse;
pub mod policy;
mod section;
pub mod silence;
pub mod value;
pub mod yaml;

pub use condition::Cond;
pub use error::{excerpt, RuleError};
pub use parse::{
    load_paths, parse_file, read_rule_file, Level, LogSource, Rule, Search, SearchBody,
};
pub use value::{FieldSpec, Placeholders, Value};
