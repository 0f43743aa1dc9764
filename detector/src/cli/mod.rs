//! The subcommands of the `trailwatch` binary, and what they share: loading rules.

pub(crate) mod allocator;
pub(crate) mod diff;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod rules;
pub(crate) mod run;
pub(crate) mod show;
pub(crate) mod verify;

use anyhow::{bail, Result};
use std::path::PathBuf;
use trailwatch::engine::RuleSet;
use trailwatch::rule::{self, Placeholders, RuleError};

#[derive(clap::Args)]
pub(crate) struct RuleArgs {
    /// Rule file or directory (repeatable, or comma-separated).
    #[arg(
        short,
        long = "rules",
        value_name = "PATH",
        required = true,
        value_delimiter = ','
    )]
    pub(crate) rules: Vec<PathBuf>,
    /// YAML file mapping placeholder names to value lists, for the `expand` modifier.
    #[arg(long, value_name = "FILE")]
    pub(crate) placeholders: Option<PathBuf>,
}

/// A duration such as `90s`, `5m`, `1h` (`0s` allowed: no lateness).
pub(crate) fn parse_span(s: &str) -> Result<i64, String> {
    if s.trim() == "0" || s.trim() == "0s" {
        return Ok(0);
    }
    trailwatch::rule::correlation::parse_timespan(s)
        .ok_or_else(|| format!("'{s}' is not a duration such as 90s, 5m or 1h"))
}

pub(crate) fn load_placeholders(path: Option<&PathBuf>) -> Result<Placeholders> {
    match path {
        Some(p) => Ok(rule::value::load_placeholders(p)?),
        None => Ok(Placeholders::new()),
    }
}

/// Loads and compiles rules, printing every error; `None` means at least one failed.
pub(crate) fn compile_rules(args: &RuleArgs) -> Result<Option<RuleSet>> {
    let placeholders = load_placeholders(args.placeholders.as_ref())?;
    let (rules, mut errors) = rule::load_paths(&args.rules, &placeholders);
    if errors.is_empty() && rules.is_empty() {
        bail!(
            "no rules found in {}",
            args.rules
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let set = match RuleSet::compile(rules) {
        Ok(set) => Some(set),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    if !errors.is_empty() {
        print_rule_errors(&errors);
        return Ok(None);
    }
    Ok(set)
}

pub(crate) fn print_rule_errors(errors: &[RuleError]) {
    for e in errors {
        eprintln!("error: {}", trailwatch::escape::line(&e.to_string()));
    }
    eprintln!("{} rule error(s)", errors.len());
}
