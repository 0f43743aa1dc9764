//! `trailwatch replay`: history through the rules, alerts or hits out.

use super::{compile_rules, parse_span, RuleArgs};
use anyhow::{Context, Result};
use clap::ValueEnum;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use trailwatch::alert::gate::Limits as AlertLimits;
use trailwatch::alert::{Format, SummaryFields};
use trailwatch::engine::RuleSet;
use trailwatch::event::Limits;
use trailwatch::replay::{self, Emit};
use trailwatch::source::file::{self, Input};
use trailwatch::source::select;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    /// JSON lines, trailwatch's alert schema (docs/alert-schema.md).
    Native,
    /// JSON lines, OCSF Detection Finding (class 2004).
    Ocsf,
    /// Aligned columns in event-time order, then a timeline per principal and per rule.
    Table,
    /// CSV in event-time order, a header line first.
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EmitArg {
    Alerts,
    Hits,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    pub(crate) rules: RuleArgs,
    /// What to write: de-duplicated alerts, or one line per rule hit.
    #[arg(long, value_enum, default_value = "alerts")]
    pub(crate) emit: EmitArg,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Exit with status 1 when anything was reported: an alert (with `--emit hits`, a hit of a
    /// rule that reports). Rules that only feed correlations do not count.
    #[arg(long)]
    pub(crate) fail_on_hit: bool,
    /// Largest document (line, file, message) accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_document_bytes, value_name = "BYTES")]
    pub(crate) max_document_bytes: usize,
    /// How late an event may arrive (event time) and still count in correlations: 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_span)]
    pub(crate) lateness: i64,
    /// Most group keys tracked per correlation rule (the least recently updated are evicted).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) max_keys: usize,
    /// IP geolocation database (MaxMind format, e.g. DB-IP City Lite; repeat for the IPv4 and
    /// IPv6 files). Required by geo rules.
    #[arg(long, value_name = "FILE")]
    pub(crate) geoip: Vec<PathBuf>,
    /// Optional ASN database (MaxMind format) for AS-number exceptions of geo rules.
    #[arg(long, value_name = "FILE")]
    pub(crate) asn_db: Option<PathBuf>,
    /// Carry correlation state between runs: restore it from FILE first (if it exists) and
    /// save it there at the end, so consecutive replays (day by day) correlate across files.
    #[arg(long, value_name = "FILE")]
    pub(crate) state: Option<PathBuf>,
    /// Evaluate every record, even one whose eventID was seen before (by default a repeated
    /// eventID is a redelivery and is counted as a duplicate only).
    #[arg(long)]
    pub(crate) keep_duplicates: bool,
    /// Alert format: JSON lines for machines (trailwatch's own, or OCSF Detection Finding), or
    /// a table or CSV in event-time order for a person.
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) format: FormatArg,
    /// Write alerts as they are made (a long replay's first alerts sooner) instead of in
    /// event-time order at the end (held in memory, spilled to temporary files past 64 MiB).
    #[arg(long)]
    pub(crate) unordered: bool,
    /// Threads that decode and match records (default: one per core). State is kept on one
    /// thread in input order, so every number of threads gives the same output.
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Size of the pieces plain files are cut into for the threads (testing).
    #[arg(long, value_name = "BYTES", default_value_t = trailwatch::replay::PIECE_BYTES, hide = true)]
    pub(crate) piece_bytes: u64,
    /// Most alerts per rule per minute of event time (0: no cap); the rest go into a storm alert.
    #[arg(long, default_value_t = AlertLimits::default().per_rule_per_minute, value_name = "N")]
    pub(crate) rate_per_rule: u32,
    /// Most alerts over all rules per minute of event time (0: no cap).
    #[arg(long, default_value_t = AlertLimits::default().global_per_minute, value_name = "N")]
    pub(crate) rate_global: u32,
    /// Secret keying the hashes of fields rules allow-list (the live service's key gives the
    /// same alerts); without it those fields are left out.
    #[arg(long, value_name = "FILE")]
    pub(crate) hmac_key_file: Option<PathBuf>,
    /// No summary on stderr.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Only events at or after this time (2026-11-01 or 2026-11-01T10:00:00Z); files and S3
    /// date folders that cannot hold such events are not read.
    #[arg(long, value_name = "TIME", value_parser = select::parse_time)]
    pub(crate) since: Option<i64>,
    /// Only events before this time.
    #[arg(long, value_name = "TIME", value_parser = select::parse_time)]
    pub(crate) until: Option<i64>,
    /// Only events of this account (`recipientAccountId`; repeat for several).
    #[arg(long = "account", value_name = "ID")]
    pub(crate) accounts: Vec<String>,
    /// Only events of this region (`awsRegion`; repeat for several).
    #[arg(long = "region", value_name = "REGION")]
    pub(crate) regions: Vec<String>,
    /// Only events of this principal: a `userIdentity` ARN, user name, principal id, or the
    /// name at the end of its ARN (a role session, a user); repeat for several.
    #[arg(long = "principal", value_name = "NAME|ARN")]
    pub(crate) principals: Vec<String>,
    /// Only alerts (and hits) of this rule or correlation, by id or title; the rules it reads
    /// are still evaluated. Repeat for several.
    #[arg(long = "rule", value_name = "ID|TITLE")]
    pub(crate) only_rules: Vec<String>,
    /// Only alerts (and hits) of rules of this level or above.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub(crate) level: Option<trailwatch::rule::Level>,
    /// Only the accounts whose stable hash falls in shard K of N: N replays (processes or
    /// machines) split an archive with nothing shared, and their alerts together equal one
    /// full replay's.
    #[arg(long, value_name = "K/N", value_parser = select::parse_shard)]
    pub(crate) shard: Option<(u64, u64)>,
    /// Endpoint of an S3-compatible store for `s3://` inputs (default: AWS_ENDPOINT_URL, else
    /// AWS). Credentials come from the default chain.
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// Input files or directories (recursive), `s3://bucket/prefix`; `-` reads stdin.
    #[arg(required = true, value_name = "INPUT")]
    pub(crate) inputs: Vec<PathBuf>,
}

/// Parses `--level`.
fn parse_level(text: &str) -> Result<trailwatch::rule::Level, String> {
    trailwatch::rule::Level::parse(text).ok_or_else(|| {
        format!("'{text}' is not a level (informational, low, medium, high, critical)")
    })
}

/// Applies `--rule` and `--level`: which rules report. Selecting nothing is an error, not an
/// empty replay.
fn restrict_reports(set: &mut RuleSet, a: &ReplayArgs) -> Result<()> {
    if a.only_rules.is_empty() && a.level.is_none() {
        return Ok(());
    }
    let wanted = |id: &str, title: &str| {
        a.only_rules.is_empty()
            || a.only_rules
                .iter()
                .any(|w| w == id || w.eq_ignore_ascii_case(title))
    };
    let reported = set.report_only(|id, title, level| {
        wanted(id, title) && a.level.is_none_or(|min| level >= min)
    });
    if reported == 0 {
        anyhow::bail!(
            "no rule or correlation matches --rule {:?} --level {:?} (ids and titles as in the rule files)",
            a.only_rules,
            a.level.map(|l| l.as_str())
        );
    }
    Ok(())
}

/// Opens the geolocation databases; geo rules without one are a usage error.
pub(crate) fn open_geoip(
    set: &RuleSet,
    cities: &[PathBuf],
    asn: Option<&std::path::Path>,
) -> Result<Option<Arc<dyn trailwatch::geo::Locate>>> {
    let geo_rules: Vec<&str> = set
        .correlations()
        .iter()
        .filter(|c| c.spec().needs_locator())
        .map(|c| c.id())
        .collect();
    if cities.is_empty() {
        if !geo_rules.is_empty() {
            eprintln!(
                "warning: geo rules are inactive without an IP geolocation database (pass --geoip FILE), as are first_seen rules by location: {}",
                geo_rules.join(", ")
            );
        }
        return Ok(None);
    }
    let paths: Vec<&std::path::Path> = cities.iter().map(PathBuf::as_path).collect();
    let db = trailwatch::geo::MmdbLocator::open(&paths, asn)?;
    Ok(Some(Arc::new(db)))
}

pub(crate) fn cmd_replay(a: ReplayArgs) -> Result<ExitCode> {
    let Some(mut set) = compile_rules(&a.rules)? else {
        return Ok(ExitCode::from(2));
    };
    restrict_reports(&mut set, &a)?;
    if matches!(a.emit, EmitArg::Hits) && !matches!(a.format, FormatArg::Native) {
        anyhow::bail!(
            "--format {} formats alerts; --emit hits writes trailwatch's hit lines (drop one of the two)",
            a.format.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
        );
    }
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
    let selection = select::Selection {
        since: a.since,
        until: a.until,
        accounts: a.accounts.iter().cloned().collect(),
        regions: a.regions.iter().cloned().collect(),
        principals: a.principals.iter().cloned().collect(),
        shard: a.shard,
        s3_endpoint: a.s3_endpoint.clone(),
    };
    let select = (!selection.is_all()).then(|| {
        (
            selection.clone(),
            select::SelectionFields::register(&mut set),
        )
    });
    let inputs = file::expand_selected(&a.inputs, &selection).map_err(anyhow::Error::msg)?;
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
        dedup: if a.keep_duplicates {
            trailwatch::pipeline::dedup::Options {
                horizon: 0,
                max_ids: 0,
            }
        } else {
            Default::default()
        },
        locator: open_geoip(&set, &a.geoip, a.asn_db.as_deref())?,
        alert_limits: AlertLimits {
            per_rule_per_minute: a.rate_per_rule,
            global_per_minute: a.rate_global,
        },
        format: match a.format {
            FormatArg::Ocsf => Format::Ocsf,
            _ => Format::Native,
        },
        unordered: a.unordered,
        threads: a
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1),
        piece_bytes: a.piece_bytes.max(1),
        count_hours: false,
        human: match a.format {
            FormatArg::Table => Some(replay::Human::Table {
                colour: a.output.is_none()
                    && io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none(),
            }),
            FormatArg::Csv => Some(replay::Human::Csv),
            _ => None,
        },
        select,
    };
    let progress = Arc::new(replay::Progress::default());
    // Sizes only for a bar: a stat of every input is a tenth of a replay of many small files.
    let bar = (!a.quiet && io::stderr().is_terminal()).then(|| {
        let total = inputs.iter().filter_map(Input::size).sum();
        progress_bar(total, inputs.len() as u64, progress.clone())
    });
    let mut shown = 0usize;
    let summary = replay::replay(&set, &inputs, &mut out, &opts, &progress, &mut |e| {
        shown += 1;
        if !a.quiet && shown <= 50 {
            eprintln!("warning: {}", trailwatch::escape::line(&e.to_string()));
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
    Ok(if a.fail_on_hit && summary.reported(&set) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A progress bar on stderr driven by the byte counter, on its own thread.
/// A progress bar on stderr (a terminal): bytes of `total`, files of `files`, records, hits,
/// alerts, rate and time left.
pub(crate) fn progress_bar(
    total: u64,
    files: u64,
    progress: Arc<replay::Progress>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let handle = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let started = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let events = n(&progress.events);
            let rate = events as f64 / started.elapsed().as_secs_f64().max(0.1);
            bar.set_position(n(&progress.bytes));
            bar.set_message(format!(
                "files {}/{files}  events {events} ({rate:.0}/s)  hits {}  alerts {}",
                n(&progress.files),
                n(&progress.hits),
                n(&progress.alerts)
            ));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    (done, handle)
}
