//! `trailwatch check`, `explain` and `test`: rules validated, explained and proven.

use super::{compile_rules, load_placeholders, print_rule_errors, RuleArgs};
use anyhow::{bail, Context, Result};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use trailwatch::engine::RuleSet;
use trailwatch::event::{Decoder, Limits};
use trailwatch::rule;
use trailwatch::source::file::{self, Input};

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// YAML file mapping placeholder names to value lists, for the `expand` modifier.
    #[arg(long, value_name = "FILE")]
    pub(crate) placeholders: Option<PathBuf>,
    /// Treat lint warnings as errors.
    #[arg(long)]
    pub(crate) deny_warnings: bool,
    /// Rule file or directory (repeatable, or comma-separated), as for every subcommand.
    #[arg(short, long = "rules", value_name = "PATH", value_delimiter = ',')]
    pub(crate) rules: Vec<PathBuf>,
    /// Rule files or directories, also accepted without `--rules`.
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    pub(crate) rules: RuleArgs,
    /// Explain only this rule (id or title).
    #[arg(long, value_name = "ID")]
    pub(crate) rule: Option<String>,
    /// Show rules that did not match too.
    #[arg(long)]
    pub(crate) all: bool,
    /// Print the values of free-form fields (requestParameters, responseElements, ... and the
    /// whole event for keyword searches), which may hold PHI; hidden by default.
    #[arg(long)]
    pub(crate) show_free_form: bool,
    /// A file holding the event (any format replay reads; `-` for stdin); every record in it is
    /// explained.
    pub(crate) event_file: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct TestArgs {
    /// YAML file mapping placeholder names to value lists, for the `expand` modifier.
    #[arg(long, value_name = "FILE")]
    pub(crate) placeholders: Option<PathBuf>,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// Fail for a rule without fixtures (by default it is reported and skipped, so upstream
    /// rule packs can be tested as they come).
    #[arg(long)]
    pub(crate) require_fixtures: bool,
    /// Rule file or directory (repeatable, or comma-separated), as for every subcommand;
    /// `rules` when none is given.
    #[arg(short, long = "rules", value_name = "PATH", value_delimiter = ',')]
    pub(crate) rules: Vec<PathBuf>,
    /// Rule files or directories, also accepted without `--rules`.
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
}

/// The rule paths of `--rules` and of the positional arguments, or `default` when there are
/// none (an error without one).
fn rule_paths(
    flag: &[PathBuf],
    positional: &[PathBuf],
    default: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = flag.iter().chain(positional).cloned().collect();
    match (paths.is_empty(), default) {
        (false, _) => Ok(paths),
        (true, Some(d)) => Ok(vec![PathBuf::from(d)]),
        (true, None) => bail!("no rules given: pass --rules PATH (a rule file or directory)"),
    }
}

pub(crate) fn cmd_check(a: CheckArgs) -> Result<ExitCode> {
    let placeholders = load_placeholders(a.placeholders.as_ref())?;
    let paths = rule_paths(&a.rules, &a.paths, None)?;
    let (rules, mut errors) = rule::load_paths(&paths, &placeholders);
    let mut warnings = 0;
    for r in &rules {
        for w in rule::lint::lint(r) {
            warnings += 1;
            let text = format!(
                "{}:{}: rule '{}': {}",
                r.file.display(),
                w.line,
                r.label(),
                w.message
            );
            eprintln!("warning: {}", trailwatch::escape::line(&text));
        }
    }
    let count = rules.len();
    if let Err(e) = RuleSet::compile(rules) {
        errors.extend(e);
    }
    for e in &errors {
        eprintln!("error: {}", trailwatch::escape::line(&e.to_string()));
    }
    println!(
        "{count} rules loaded, {} errors, {warnings} warnings",
        errors.len()
    );
    Ok(if !errors.is_empty() || (a.deny_warnings && warnings > 0) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn cmd_explain(a: ExplainArgs) -> Result<ExitCode> {
    let Some(mut set) = compile_rules(&a.rules)? else {
        return Ok(ExitCode::from(2));
    };
    let [event_id, event_name] = set.capture(&["eventID", "eventName"])[..] else {
        bail!("capturing eventID and eventName");
    };
    let selected: Vec<usize> = (0..set.rules().len())
        .filter(|&i| {
            let r = &set.rules()[i];
            a.rule
                .as_deref()
                .is_none_or(|want| r.id() == want || r.rule.title == want)
        })
        .collect();
    if selected.is_empty() {
        bail!("no rule with id or title '{}'", a.rule.unwrap_or_default());
    }
    let input = if a.event_file.as_os_str() == "-" {
        Input::Stdin
    } else {
        Input::File(a.event_file.clone())
    };
    let reader = file::open(&input, Default::default())
        .with_context(|| format!("reading {}", a.event_file.display()))?;
    let mut decoder = Decoder::new(set.fields(), Limits::default());
    let mut out = io::stdout().lock();
    let mut index = 0;
    let mut result: io::Result<()> = Ok(());
    file::read_documents(
        &input.name(),
        reader,
        &mut decoder,
        &mut |item, loc| match item {
            Ok(ev) => {
                // Both are the record's own text: shown escaped, never as terminal controls.
                let shown = |f| trailwatch::escape::shown(ev.get(f).text().unwrap_or("-"), 128);
                let _ = writeln!(
                    out,
                    "# event {index} ({loc}) eventID {} eventName {}",
                    shown(event_id),
                    shown(event_name)
                );
                index += 1;
                for &i in &selected {
                    let mut x = set.explain(i, ev);
                    if !a.show_free_form {
                        x.hide_free_form();
                    }
                    if (x.matched || a.all || a.rule.is_some()) && result.is_ok() {
                        result = write!(out, "{x}");
                    }
                }
            }
            Err(e) => eprintln!("warning: {}", trailwatch::escape::line(&e.to_string())),
        },
    );
    result?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn cmd_test(a: TestArgs) -> Result<ExitCode> {
    let args = RuleArgs {
        rules: rule_paths(&a.rules, &a.paths, Some("rules"))?,
        placeholders: a.placeholders.clone(),
    };
    let Some(set) = compile_rules(&args)? else {
        return Ok(ExitCode::from(2));
    };
    let results = match trailwatch::fixture::run(&set) {
        Ok(r) => r,
        Err(errors) => {
            print_rule_errors(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = io::stdout().lock();
    let (mut failed_rules, mut cases, mut failed_cases, mut untested) = (0, 0, 0, 0);
    for r in &results {
        cases += r.cases.len();
        let skipped = r.cases.is_empty() && !a.require_fixtures;
        let verdict = match (r.passed(), skipped) {
            (true, _) => "PASS",
            (false, true) => "SKIP",
            (false, false) => "FAIL",
        };
        untested += usize::from(r.cases.is_empty());
        if verdict == "FAIL" {
            failed_rules += 1;
        }
        writeln!(
            out,
            "{verdict}  {}  {}  ({} fixtures, {})",
            r.rule_id,
            r.title,
            r.cases.len(),
            r.file
        )?;
        if r.cases.is_empty() {
            writeln!(
                out,
                "      the rule has no fixtures: add some under trailwatch.tests, or in {}",
                trailwatch::fixture::side_file(std::path::Path::new(&r.file)).display()
            )?;
        }
        for c in &r.cases {
            if let Some(f) = &c.failure {
                failed_cases += 1;
                writeln!(
                    out,
                    "      fixture '{}' ({}:{}): {f}",
                    c.fixture.name,
                    c.fixture.file.display(),
                    c.fixture.line
                )?;
            }
        }
    }
    writeln!(
        out,
        "{} rules, {cases} fixtures: {} rules passed, {failed_rules} failed ({failed_cases} fixtures failed), {untested} without fixtures",
        results.len(),
        results.len() - failed_rules - if a.require_fixtures { 0 } else { untested }
    )?;
    if untested > 0 && !a.require_fixtures {
        eprintln!(
            "warning: {untested} rules have no fixtures (--require-fixtures makes that a failure)"
        );
    }
    if let Some(path) = &a.junit {
        std::fs::write(
            path,
            trailwatch::fixture::junit(&results, a.require_fixtures),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if failed_rules > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
