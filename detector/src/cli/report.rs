//! `trailwatch report`: the auditor's report over the archive, or over a replay of history.

use super::{compile_rules, RuleArgs};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use trailwatch::alert::SummaryFields;
use trailwatch::report::{self, Evidence, Period, RulesInForce};
use trailwatch::sink::archive::object::{self, Name};
use trailwatch::sink::archive::store::Store;
use trailwatch::source::{file, select};

#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    /// The archive: a directory or `s3://bucket/prefix`.
    #[arg(long, value_name = "ARCHIVE", conflicts_with_all = ["config", "inputs"])]
    pub(crate) archive: Option<String>,
    /// The service's configuration: the archive (and key) of its `[sink.archive]`.
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    pub(crate) config: Option<PathBuf>,
    /// The archive key: the archive is verified and the verdict is in the report.
    #[arg(long, value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,
    /// Rules to replay INPUT with, instead of reading an archive.
    #[arg(
        long = "rules",
        short,
        value_name = "PATH",
        value_delimiter = ',',
        requires = "inputs"
    )]
    pub(crate) rules: Vec<PathBuf>,
    /// Placeholder values for the replay's rules.
    #[arg(long, value_name = "FILE")]
    pub(crate) placeholders: Option<PathBuf>,
    /// IP geolocation database for the replay's geo rules (repeatable).
    #[arg(long, value_name = "FILE")]
    pub(crate) geoip: Vec<PathBuf>,
    /// Start of the period (2026-11-01 or 2026-11-01T10:00:00Z, UTC); default: the evidence's first hour.
    #[arg(long, value_name = "TIME", value_parser = select::parse_time)]
    pub(crate) since: Option<i64>,
    /// End of the period, exclusive; default: after the evidence's last hour.
    #[arg(long, value_name = "TIME", value_parser = select::parse_time)]
    pub(crate) until: Option<i64>,
    /// Where report.html and the CSV tables go (created).
    #[arg(long, short, value_name = "DIR", default_value = "report")]
    pub(crate) out: PathBuf,
    /// Hours without events that make a silent period of an account and region.
    #[arg(long, value_name = "HOURS", default_value_t = 6)]
    pub(crate) silent_hours: i64,
    /// Rows of the top principals and top addresses tables.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub(crate) top: usize,
    /// The endpoint of an S3-compatible store (else `AWS_ENDPOINT_URL` or AWS's own).
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// History to replay (files, directories, `s3://`), with --rules.
    #[arg(value_name = "INPUT")]
    pub(crate) inputs: Vec<PathBuf>,
}

pub(crate) fn cmd_report(a: ReportArgs) -> Result<ExitCode> {
    if let (Some(s), Some(u)) = (a.since, a.until) {
        if u <= s {
            bail!("--until must be after --since");
        }
    }
    let evidence = if a.inputs.is_empty() {
        from_archive(&a)?
    } else {
        if a.rules.is_empty() {
            bail!("replaying INPUT needs --rules");
        }
        from_replay(&a)?
    };
    let period = match (a.since, a.until) {
        (None, None) => None,
        (since, until) => {
            let probe = report::build(&evidence, &report::Options::default()).period;
            Some(Period {
                since: since.unwrap_or(probe.since),
                until: until.unwrap_or(probe.until),
            })
        }
    };
    let opts = report::Options {
        period,
        silent_hours: a.silent_hours.max(1),
        top: a.top.max(1),
        ..report::Options::default()
    };
    let built = report::build(&evidence, &opts);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let html = a.out.join("report.html");
    std::fs::write(&html, report::html::render(&built))
        .with_context(|| format!("writing {}", html.display()))?;
    let csvs = report::csv::write(&built, &a.out)
        .with_context(|| format!("writing CSV into {}", a.out.display()))?;
    eprintln!("wrote {} and {} CSV tables", html.display(), csvs.len());
    if evidence.unreadable > 0 {
        eprintln!(
            "warning: {} archive records could not be read",
            evidence.unreadable
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Every record of the archive whose day can hold the period's events.
fn from_archive(a: &ReportArgs) -> Result<Evidence> {
    runtime()?.block_on(async {
        let aws = aws_config::load_from_env().await;
        let (store, key) = match (&a.config, &a.archive) {
            (Some(path), _) => {
                let (store, key) = super::verify::configured(path, &aws)?;
                (store, Some(key))
            }
            (None, Some(location)) => {
                let key = match &a.key_file {
                    Some(k) => Some(trailwatch::alert::read_hmac_key(k)?),
                    None => None,
                };
                (super::verify::store_at(location, a.s3_endpoint.as_deref(), &aws)?, key)
            }
            (None, None) => bail!("name the evidence: --archive, --config, or --rules with INPUT"),
        };
        let mut evidence = Evidence {
            source: format!("the archive {}", store.describe()),
            ..Evidence::default()
        };
        // Objects are sealed after their events: a day of margin before, two after.
        let day = |t: i64| {
            trailwatch::window::format_time(t)
                .get(..10)
                .unwrap_or_default()
                .to_string()
        };
        let from = a.since.map(|s| day(s - 86_400));
        let to = a.until.map(|u| day(u + 2 * 86_400));
        let names = store
            .list()
            .await
            .with_context(|| format!("listing {}", store.describe()))?;
        for name in names {
            let Some(Name::Object { day, .. }) = object::parse_name(&name) else {
                continue;
            };
            if from.as_ref().is_some_and(|f| day < *f) || to.as_ref().is_some_and(|t| day > *t) {
                continue;
            }
            take_object(&store, &name, key.as_deref(), &mut evidence).await;
        }
        if let Some(key) = key {
            let scope = trailwatch::sink::archive::verify::Scope {
                key,
                max_gap: std::time::Duration::from_secs(900),
                since: from,
                until: to,
                max_age: None,
            };
            let checked = trailwatch::sink::archive::verify::verify(&store, &scope).await?;
            evidence.integrity = Some(match checked.exit_code() {
                0 => format!(
                    "intact: {} objects, {} signed days (trailwatch verify-archive)",
                    checked.objects, checked.days_signed
                ),
                3 => format!(
                    "intact, with {} gaps in monitoring: {} objects (trailwatch verify-archive)",
                    checked.findings.len(),
                    checked.objects
                ),
                _ => format!(
                    "NOT intact: {} problems found by trailwatch verify-archive; first: {} {}",
                    checked.findings.len(),
                    checked.findings[0].name,
                    checked.findings[0].detail
                ),
            });
        }
        if evidence.integrity.is_none() {
            evidence.integrity = Some(
                "not verified: no archive key given (--key-file or --config); records are taken as they are".into(),
            );
        }
        Ok(evidence)
    })
}

/// Takes one object's records into the evidence: only an object that reads whole and, with the
/// key, whose MAC and records hash hold (a forged object must not frame anyone). Records are
/// handled one line at a time, so memory does not grow with what an object expands to.
async fn take_object(store: &Store, name: &str, key: Option<&[u8]>, evidence: &mut Evidence) {
    let shown = trailwatch::escape::line(name);
    let bytes = match store.get(name).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("warning: {shown}: {e}");
            evidence.unreadable += 1;
            return;
        }
    };
    let checked = match object::check(&bytes) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: {shown}: {e}");
            evidence.unreadable += 1;
            return;
        }
    };
    let h = &checked.header;
    if key.is_some_and(|k| !h.mac_holds(k) || checked.records_sha256 != h.records_sha256) {
        eprintln!("warning: {shown}: left out: it fails verification with the archive key");
        evidence.excluded += 1;
        return;
    }
    if let Some(t) = trailwatch::window::event_time(&h.sealed) {
        evidence.sealed.entry(h.writer.clone()).or_default().push(t);
    }
    let _ = object::read(&bytes, &mut |_, line| {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) => evidence.add_record(&v),
            Err(_) => evidence.unreadable += 1,
        }
        Ok(())
    });
}

/// Replays the inputs through the rules: their alerts, and the events by account, region
/// and hour.
fn from_replay(a: &ReportArgs) -> Result<Evidence> {
    let rule_args = RuleArgs {
        rules: a.rules.clone(),
        placeholders: a.placeholders.clone(),
    };
    let Some(mut set) = compile_rules(&rule_args)? else {
        bail!("the rules do not compile");
    };
    set.track_delivery();
    let summaries = SummaryFields::register(&mut set);
    let selection = select::Selection {
        since: a.since,
        until: a.until,
        s3_endpoint: a.s3_endpoint.clone(),
        ..select::Selection::default()
    };
    let select = (!selection.is_all()).then(|| {
        (
            selection.clone(),
            select::SelectionFields::register(&mut set),
        )
    });
    let inputs = file::expand_selected(&a.inputs, &selection).map_err(anyhow::Error::msg)?;
    let opts = trailwatch::replay::Options {
        human: None,
        emit: trailwatch::replay::Emit::Alerts,
        summaries: Some(summaries),
        limits: Default::default(),
        windows: trailwatch::window::Options {
            lateness: 300,
            max_keys: 100_000,
        },
        state_file: None,
        dedup: Default::default(),
        locator: super::replay::open_geoip(&set, &a.geoip, None)?,
        alert_limits: Default::default(),
        format: trailwatch::alert::Format::Native,
        unordered: false,
        select,
        threads: std::thread::available_parallelism().map_or(1, usize::from),
        piece_bytes: trailwatch::replay::PIECE_BYTES,
        count_hours: true,
    };
    let mut out = Vec::new();
    let progress = trailwatch::replay::Progress::default();
    let mut errors = 0u64;
    let summary =
        trailwatch::replay::replay(&set, &inputs, &mut out, &opts, &progress, &mut |_| {
            errors += 1
        })?;
    if errors > 0 {
        eprintln!("warning: {errors} input errors (run trailwatch replay for each)");
    }
    let mut evidence = Evidence {
        source: format!(
            "a replay of {} input(s): {}",
            inputs.len(),
            inputs
                .iter()
                .map(|i| i.name())
                .take(5)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        coverage: summary.hours,
        ..Evidence::default()
    };
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        evidence
            .alerts
            .push(serde_json::from_slice(line).context("reading the replay's alerts")?);
    }
    evidence.rules.push(RulesInForce {
        at: String::new(),
        reason: "replay".into(),
        hash: trailwatch::rule::parse::rules_digest(&a.rules, a.placeholders.as_deref()),
        rules: set.rules().len() as u64,
        correlations: set.correlations().len() as u64,
        version: env!("CARGO_PKG_VERSION").into(),
    });
    Ok(evidence)
}
