//! The `trailwatch` command line: replay, check, explain.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use trailwatch::alert::gate::Limits as AlertLimits;
use trailwatch::alert::{Format, SummaryFields};
use trailwatch::engine::RuleSet;
use trailwatch::event::{Decoder, Limits};
use trailwatch::replay::{self, Emit};
use trailwatch::rule::{self, Placeholders, RuleError};
use trailwatch::source::file::{self, Input};

#[derive(Parser)]
#[command(
    name = "trailwatch",
    version,
    about = "Sigma detection for AWS CloudTrail: replay history, check and explain rules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate historical CloudTrail input and write alerts (or hits) as JSON lines.
    Replay(ReplayArgs),
    /// Validate and lint rule files; exit 2 if any rule is invalid.
    Check(CheckArgs),
    /// Say for each rule whether it matches an event, and which entries decided it.
    Explain(ExplainArgs),
    /// Run every rule's fixtures (`trailwatch.tests`); fail on a wrong verdict or a rule without any.
    Test(TestArgs),
    /// Run the live service: SQS in, deduplicated alerts to SNS and/or a file, /metrics.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct TestArgs {
    /// YAML file mapping placeholder names to value lists, for the `expand` modifier.
    #[arg(long, value_name = "FILE")]
    placeholders: Option<PathBuf>,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Rule files or directories.
    #[arg(value_name = "PATH", default_value = "rules")]
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct RuleArgs {
    /// Rule file or directory (repeatable, or comma-separated).
    #[arg(
        short,
        long = "rules",
        value_name = "PATH",
        required = true,
        value_delimiter = ','
    )]
    rules: Vec<PathBuf>,
    /// YAML file mapping placeholder names to value lists, for the `expand` modifier.
    #[arg(long, value_name = "FILE")]
    placeholders: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Native,
    Ocsf,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmitArg {
    Alerts,
    Hits,
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// What to write: de-duplicated alerts, or one line per rule hit.
    #[arg(long, value_enum, default_value = "alerts")]
    emit: EmitArg,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Exit with status 1 when any rule hit.
    #[arg(long)]
    fail_on_hit: bool,
    /// Largest document (line, file, message) accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_document_bytes, value_name = "BYTES")]
    max_document_bytes: usize,
    /// How late an event may arrive (event time) and still count in correlations: 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_span)]
    lateness: i64,
    /// Most group keys tracked per correlation rule (the least recently updated are evicted).
    #[arg(long, default_value_t = 100_000)]
    max_keys: usize,
    /// IP geolocation database (MaxMind format, e.g. DB-IP City Lite; repeat for the IPv4 and
    /// IPv6 files). Required by geo rules.
    #[arg(long, value_name = "FILE")]
    geoip: Vec<PathBuf>,
    /// Optional ASN database (MaxMind format) for AS-number exceptions of geo rules.
    #[arg(long, value_name = "FILE")]
    asn_db: Option<PathBuf>,
    /// Carry correlation state between runs: restore it from FILE first (if it exists) and
    /// save it there at the end, so consecutive replays (day by day) correlate across files.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Alert format: trailwatch's own, or OCSF Detection Finding (class 2004).
    #[arg(long, value_enum, default_value = "native")]
    format: FormatArg,
    /// Most alerts per rule per minute of event time (0: no cap); the rest go into a storm alert.
    #[arg(long, default_value_t = AlertLimits::default().per_rule_per_minute, value_name = "N")]
    rate_per_rule: u32,
    /// Most alerts over all rules per minute of event time (0: no cap).
    #[arg(long, default_value_t = AlertLimits::default().global_per_minute, value_name = "N")]
    rate_global: u32,
    /// Secret keying the hashes of fields rules allow-list (the live service's key gives the
    /// same alerts); without it those fields are left out.
    #[arg(long, value_name = "FILE")]
    hmac_key_file: Option<PathBuf>,
    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Input files or directories (recursive); `-` reads stdin.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// YAML file mapping placeholder names to value lists, for the `expand` modifier.
    #[arg(long, value_name = "FILE")]
    placeholders: Option<PathBuf>,
    /// Treat lint warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
    /// Rule files or directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// Explain only this rule (id or title).
    #[arg(long, value_name = "ID")]
    rule: Option<String>,
    /// Show rules that did not match too.
    #[arg(long)]
    all: bool,
    /// A file holding the event (any format replay reads); every record in it is explained.
    event_file: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(a) => cmd_replay(a),
        Command::Check(a) => cmd_check(a),
        Command::Explain(a) => cmd_explain(a),
        Command::Test(a) => cmd_test(a),
        Command::Run(a) => cmd_run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("trailwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Opens the geolocation databases; geo rules without one are a usage error.
fn open_geoip(
    set: &RuleSet,
    cities: &[PathBuf],
    asn: Option<&std::path::Path>,
) -> Result<Option<Arc<dyn trailwatch::geo::Locate>>> {
    let geo_rules: Vec<&str> = set
        .correlations()
        .iter()
        .filter(|c| c.kind.is_geo())
        .map(|c| c.id())
        .collect();
    if cities.is_empty() {
        if !geo_rules.is_empty() {
            eprintln!(
                "warning: geo rules are inactive without an IP geolocation database (pass --geoip FILE): {}",
                geo_rules.join(", ")
            );
        }
        return Ok(None);
    }
    let paths: Vec<&std::path::Path> = cities.iter().map(PathBuf::as_path).collect();
    let db = trailwatch::geo::MmdbLocator::open(&paths, asn)?;
    Ok(Some(Arc::new(db)))
}

/// A duration such as `90s`, `5m`, `1h` (`0s` allowed: no lateness).
fn parse_span(s: &str) -> Result<i64, String> {
    if s.trim() == "0" || s.trim() == "0s" {
        return Ok(0);
    }
    trailwatch::rule::correlation::parse_timespan(s)
        .ok_or_else(|| format!("'{s}' is not a duration such as 90s, 5m or 1h"))
}

fn load_placeholders(path: Option<&PathBuf>) -> Result<Placeholders> {
    match path {
        Some(p) => Ok(rule::value::load_placeholders(p)?),
        None => Ok(Placeholders::new()),
    }
}

/// Loads and compiles rules, printing every error; `None` means at least one failed.
fn compile_rules(args: &RuleArgs) -> Result<Option<RuleSet>> {
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

fn print_rule_errors(errors: &[RuleError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!("{} rule error(s)", errors.len());
}

fn cmd_replay(a: ReplayArgs) -> Result<ExitCode> {
    let Some(mut set) = compile_rules(&a.rules)? else {
        return Ok(ExitCode::from(2));
    };
    // Hits name only the rule and the event; alerts also carry the event's summary fields.
    let hmac_key = match &a.hmac_key_file {
        Some(p) => Some(trailwatch::alert::read_hmac_key(p)?),
        None => None,
    };
    let summaries = matches!(a.emit, EmitArg::Alerts)
        .then(|| SummaryFields::register(&mut set).with_hmac_key(hmac_key));
    if let Some(s) = summaries.as_ref().filter(|s| !s.has_hmac_key()) {
        if let Some(r) = s.rules_with_hashed_fields().next() {
            eprintln!(
                "note: rule {} allow-lists hashed fields; without --hmac-key-file they are left out",
                set.rules()[r].id()
            );
        }
    }
    let inputs = file::expand_inputs(&a.inputs).map_err(anyhow::Error::msg)?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut out = io::BufWriter::with_capacity(1 << 16, &mut out);
    let opts = replay::Options {
        emit: match a.emit {
            EmitArg::Alerts => Emit::Alerts,
            EmitArg::Hits => Emit::Hits,
        },
        limits: Limits {
            max_document_bytes: a.max_document_bytes,
            ..Limits::default()
        },
        summaries,
        windows: trailwatch::window::Options {
            lateness: a.lateness,
            max_keys: a.max_keys.max(1),
        },
        state_file: a.state.clone(),
        locator: open_geoip(&set, &a.geoip, a.asn_db.as_deref())?,
        alert_limits: AlertLimits {
            per_rule_per_minute: a.rate_per_rule,
            global_per_minute: a.rate_global,
        },
        format: match a.format {
            FormatArg::Native => Format::Native,
            FormatArg::Ocsf => Format::Ocsf,
        },
    };
    let progress = Arc::new(AtomicU64::new(0));
    let total: u64 = inputs.iter().filter_map(Input::size).sum();
    let bar = (!a.quiet && io::stderr().is_terminal() && total > 64 << 20)
        .then(|| progress_bar(total, progress.clone()));
    let mut shown = 0usize;
    let summary = replay::replay(&set, &inputs, &mut out, &opts, progress, &mut |e| {
        shown += 1;
        if !a.quiet && shown <= 50 {
            eprintln!("warning: {e}");
        } else if !a.quiet && shown == 51 {
            eprintln!("warning: further input errors are counted in the summary only");
        }
    });
    if let Some((done, handle)) = bar {
        done.store(true, Ordering::Relaxed);
        let _ = handle.join();
    }
    let summary = summary?;
    out.flush()?;
    if !a.quiet {
        summary.write(&set, &mut io::stderr())?;
    }
    Ok(if a.fail_on_hit && summary.total_hits() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A progress bar on stderr driven by the byte counter, on its own thread.
fn progress_bar(
    total: u64,
    read: Arc<AtomicU64>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let handle = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        while !stop.load(Ordering::Relaxed) {
            bar.set_position(read.load(Ordering::Relaxed));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    (done, handle)
}

fn cmd_check(a: CheckArgs) -> Result<ExitCode> {
    let placeholders = load_placeholders(a.placeholders.as_ref())?;
    let (rules, mut errors) = rule::load_paths(&a.paths, &placeholders);
    let mut warnings = 0;
    for r in &rules {
        for w in rule::lint::lint(r) {
            warnings += 1;
            eprintln!(
                "warning: {}:{}: rule '{}': {}",
                r.file.display(),
                w.line,
                r.label(),
                w.message
            );
        }
    }
    let count = rules.len();
    if let Err(e) = RuleSet::compile(rules) {
        errors.extend(e);
    }
    for e in &errors {
        eprintln!("error: {e}");
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

fn cmd_explain(a: ExplainArgs) -> Result<ExitCode> {
    let Some(set) = compile_rules(&a.rules)? else {
        return Ok(ExitCode::from(2));
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
    let input = Input::File(a.event_file.clone());
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
                let _ = writeln!(out, "# event {index} ({loc})");
                index += 1;
                for &i in &selected {
                    let x = set.explain(i, ev);
                    if (x.matched || a.all || a.rule.is_some()) && result.is_ok() {
                        result = write!(out, "{x}");
                    }
                }
            }
            Err(e) => eprintln!("warning: {e}"),
        },
    );
    result?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_test(a: TestArgs) -> Result<ExitCode> {
    let args = RuleArgs {
        rules: a.paths.clone(),
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
    let (mut failed_rules, mut cases, mut failed_cases) = (0, 0, 0);
    for r in &results {
        cases += r.cases.len();
        let verdict = if r.passed() { "PASS" } else { "FAIL" };
        if !r.passed() {
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
                "      the rule has no fixtures: add some under trailwatch.tests"
            )?;
        }
        for c in &r.cases {
            if let Some(f) = &c.failure {
                failed_cases += 1;
                writeln!(
                    out,
                    "      fixture '{}' (line {}): {f}",
                    c.fixture.name, c.fixture.line
                )?;
            }
        }
    }
    writeln!(
        out,
        "{} rules, {cases} fixtures: {} rules passed, {failed_rules} failed ({failed_cases} fixtures failed)",
        results.len(),
        results.len() - failed_rules
    )?;
    if let Some(path) = &a.junit {
        std::fs::write(path, trailwatch::fixture::junit(&results))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if failed_rules > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match a.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let config = trailwatch::config::Config::load(&a.config)?;
    trailwatch::run::run(config)?;
    Ok(ExitCode::SUCCESS)
}
