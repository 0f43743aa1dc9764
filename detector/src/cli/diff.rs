//! `trailwatch diff`: what a rule change would have paged, over real history.

use super::replay::open_geoip;
use super::{compile_rules, parse_span, RuleArgs};
use anyhow::Result;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use trailwatch::alert::gate::Limits as AlertLimits;
use trailwatch::alert::{Alert, SummaryFields};
use trailwatch::diff::{self, Report, Side};
use trailwatch::escape::shown;
use trailwatch::pipeline::Settings;
use trailwatch::source::file;

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum DiffFormat {
    /// Per-rule counts, then the alerts gained, lost and changed.
    Table,
    /// One JSON line per alert gained, lost or changed.
    Json,
}

#[derive(clap::Args)]
pub(crate) struct DiffArgs {
    /// The rules as they are (file or directory; repeatable, or comma-separated).
    #[arg(long, value_name = "PATH", required = true, value_delimiter = ',')]
    pub(crate) before: Vec<PathBuf>,
    /// The rules as they would be.
    #[arg(long, value_name = "PATH", required = true, value_delimiter = ',')]
    pub(crate) after: Vec<PathBuf>,
    /// YAML file mapping placeholder names to value lists (both sides).
    #[arg(long, value_name = "FILE")]
    pub(crate) placeholders: Option<PathBuf>,
    /// How late an event may arrive (event time) and still count in correlations.
    #[arg(long, default_value = "5m", value_parser = parse_span)]
    pub(crate) lateness: i64,
    /// IP geolocation database for geo rules (repeat for the IPv4 and IPv6 files).
    #[arg(long, value_name = "FILE")]
    pub(crate) geoip: Vec<PathBuf>,
    /// How the differences are written.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: DiffFormat,
    /// Exit 1 when any alert is gained, lost or changed (for CI review of rule changes).
    #[arg(long)]
    pub(crate) fail_on_change: bool,
    /// The endpoint of an S3-compatible store (else `AWS_ENDPOINT_URL` or AWS's own).
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// CloudTrail input: files, folders, `-`, `s3://` locations (as for replay).
    #[arg(required = true, value_name = "INPUT")]
    pub(crate) inputs: Vec<PathBuf>,
}

/// Alerts listed per section in the table; JSON lists all.
const LISTED: usize = 50;

pub(crate) fn cmd_diff(a: DiffArgs) -> Result<ExitCode> {
    let load = |rules: &[PathBuf]| {
        compile_rules(&RuleArgs {
            rules: rules.to_vec(),
            placeholders: a.placeholders.clone(),
        })
    };
    let (Some(mut old), Some(mut new)) = (load(&a.before)?, load(&a.after)?) else {
        return Ok(ExitCode::from(2));
    };
    let before_fields = SummaryFields::register(&mut old);
    let after_fields = SummaryFields::register(&mut new);
    let locator = open_geoip(&new, &a.geoip, None)?;
    let settings = Settings {
        windows: trailwatch::window::Options {
            lateness: a.lateness,
            ..Default::default()
        },
        // What a rule detects, not what rate caps let through (a change to one rule would
        // move other rules' alerts in and out of storms).
        alert_limits: AlertLimits {
            per_rule_per_minute: 0,
            global_per_minute: 0,
        },
        ..Settings::default()
    };
    let selection = trailwatch::source::select::Selection {
        s3_endpoint: a.s3_endpoint.clone(),
        ..Default::default()
    };
    let inputs = file::expand_selected(&a.inputs, &selection).map_err(anyhow::Error::msg)?;
    let report = diff::run(
        Side {
            set: &old,
            summaries: before_fields,
        },
        Side {
            set: &new,
            summaries: after_fields,
        },
        &inputs,
        &settings,
        locator,
        &mut |e| eprintln!("warning: {}", trailwatch::escape::line(&e.to_string())),
    )?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    match a.format {
        DiffFormat::Table => write_table(&report, &mut out)?,
        DiffFormat::Json => write_json(&report, &mut out)?,
    }
    out.flush()?;
    Ok(if a.fail_on_change && report.differs() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_table(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let changed: Vec<_> = r
        .rules
        .iter()
        .filter(|c| c.gained + c.lost + c.changed > 0)
        .collect();
    writeln!(
        out,
        "{:<36}  {:<40}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}",
        "rule", "title", "before", "after", "gained", "lost", "changed"
    )?;
    for c in &changed {
        writeln!(
            out,
            "{:<36}  {:<40}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}",
            shown(&c.rule_id, 36),
            shown(&c.title, 40),
            c.before,
            c.after,
            c.gained,
            c.lost,
            c.changed
        )?;
    }
    writeln!(
        out,
        "{} rules changed: {} alerts gained, {} lost, {} changed; {} rules unchanged; {} events read, {} unreadable",
        changed.len(),
        r.gained.len(),
        r.lost.len(),
        r.changed.len(),
        r.rules.len() - changed.len(),
        r.events,
        r.errors
    )?;
    section(out, "gained", r.gained.iter())?;
    section(out, "lost", r.lost.iter())?;
    section(out, "changed", r.changed.iter().map(|(_, a)| a))?;
    Ok(())
}

fn section<'a>(
    out: &mut dyn Write,
    name: &str,
    alerts: impl ExactSizeIterator<Item = &'a Alert>,
) -> io::Result<()> {
    let n = alerts.len();
    if n == 0 {
        return Ok(());
    }
    writeln!(out, "\n{name}:")?;
    for a in alerts.take(LISTED) {
        writeln!(
            out,
            "  {}  {:<6}  {:>5}  {}  {}",
            a.first_seen.as_deref().unwrap_or("-"),
            kind(a),
            a.count,
            shown(&a.rule.title, 60),
            shown(&a.group_key, 160)
        )?;
    }
    if n > LISTED {
        writeln!(out, "  … {} more (--format json lists all)", n - LISTED)?;
    }
    Ok(())
}

fn kind(a: &Alert) -> &'static str {
    match a.kind {
        trailwatch::alert::AlertKind::Alert => "alert",
        trailwatch::alert::AlertKind::Rollup => "rollup",
        trailwatch::alert::AlertKind::Storm => "storm",
    }
}

fn write_json(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut line = |v: serde_json::Value| writeln!(out, "{v}");
    for a in &r.gained {
        line(serde_json::json!({"change": "gained", "alert": a}))?;
    }
    for a in &r.lost {
        line(serde_json::json!({"change": "lost", "alert": a}))?;
    }
    for (b, a) in &r.changed {
        line(serde_json::json!({"change": "changed", "before": b, "alert": a}))?;
    }
    Ok(())
}
