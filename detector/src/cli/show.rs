//! `trailwatch show`: the CloudTrail records behind an alert, for an authorised investigator.
//!
//! Alerts carry the minimum necessary of an event; the record itself may hold PHI (request
//! parameters, object keys, user agents), so printing it takes an explicit `--allow-phi`.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trailwatch::event::{Decoder, FieldTable, Limits};
use trailwatch::source::{file, s3, select};

#[derive(clap::Args)]
pub(crate) struct ShowArgs {
    /// Confirm you are authorised to see whole records, which may hold PHI.
    #[arg(long)]
    pub(crate) allow_phi: bool,
    /// Alerts (JSON lines, native or OCSF) whose events to show: every id in their lineage.
    #[arg(long, value_name = "FILE")]
    pub(crate) alerts: Option<PathBuf>,
    /// With `--alerts`: only the alerts with this id (repeatable).
    #[arg(long = "alert-id", value_name = "ID", requires = "alerts")]
    pub(crate) alert_ids: Vec<String>,
    /// The endpoint of an S3-compatible store (else `AWS_ENDPOINT_URL` or AWS's own).
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// Event ids and inputs: an argument that is `-`, an `s3://` location or an existing path
    /// is an input (any form replay reads); any other is an eventID.
    #[arg(value_name = "EVENT_ID|INPUT", required = true)]
    pub(crate) args: Vec<String>,
}

/// Seconds of event time either side of the alerts' events whose log files are read.
const MARGIN: i64 = 3600;

/// What to look for: each wanted eventID, with its event time when an alert said it.
#[derive(Debug, Default)]
struct Wanted {
    ids: BTreeMap<String, Option<i64>>,
}

impl Wanted {
    fn add(&mut self, id: &str, time: Option<i64>) {
        let slot = self.ids.entry(id.to_string()).or_insert(time);
        *slot = slot.or(time);
    }

    /// Times to list an archive for: the span of the alerts' event times and an hour either
    /// side (log files are named by delivery, not event, time), when every id has one.
    fn span(&self) -> Option<(i64, i64)> {
        let times: Option<Vec<i64>> = self.ids.values().copied().collect();
        let times = times?;
        let (lo, hi) = (times.iter().min()?, times.iter().max()?);
        Some((lo.saturating_sub(MARGIN), hi.saturating_add(MARGIN)))
    }
}

fn is_input(arg: &str) -> bool {
    arg == "-" || s3::is_s3(arg) || Path::new(arg).exists()
}

/// Reads the lineage (and single events) of the alerts in `path`, or of those listed in `only`.
fn ids_from_alerts(path: &Path, only: &[String], wanted: &mut Wanted) -> Result<usize> {
    let reader = io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let mut alerts = 0;
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let alert: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not an alert (JSON)", path.display(), n + 1))?;
        let id = alert
            .get("alert_id")
            .or_else(|| alert.pointer("/metadata/uid"))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !only.is_empty() && !only.iter().any(|o| o == id) {
            continue;
        }
        alerts += 1;
        let lineage = alert
            .get("lineage")
            .or_else(|| alert.pointer("/unmapped/lineage"));
        let refs = lineage
            .and_then(|l| l.get("events"))
            .and_then(|e| e.as_array());
        for r in refs.into_iter().flatten() {
            if let Some(id) = r.get("eventID").and_then(|v| v.as_str()) {
                let time = r
                    .get("eventTime")
                    .and_then(|v| v.as_str())
                    .and_then(trailwatch::window::event_time);
                wanted.add(id, time);
            }
        }
    }
    if !only.is_empty() && alerts < only.len() {
        bail!(
            "{}: {} of the {} alert ids given are not in it",
            path.display(),
            only.len() - alerts,
            only.len()
        );
    }
    Ok(alerts)
}

pub(crate) fn cmd_show(a: ShowArgs) -> Result<ExitCode> {
    if !a.allow_phi {
        bail!(
            "show prints whole CloudTrail records, which may hold PHI (request parameters, \
             object keys, user agents); pass --allow-phi if you are authorised to see them"
        );
    }
    let mut wanted = Wanted::default();
    let (inputs, ids): (Vec<&String>, Vec<&String>) = a.args.iter().partition(|s| is_input(s));
    for id in ids {
        wanted.add(id, None);
    }
    if let Some(path) = &a.alerts {
        ids_from_alerts(path, &a.alert_ids, &mut wanted)?;
    }
    if wanted.ids.is_empty() {
        bail!("no event ids: give eventIDs, or --alerts FILE with alerts that name events");
    }
    if inputs.is_empty() {
        bail!("no input: give the files, folders or s3:// locations that hold the events");
    }
    let selection = select::Selection {
        since: wanted.span().map(|s| s.0),
        until: wanted.span().map(|s| s.1),
        s3_endpoint: a.s3_endpoint.clone(),
        ..Default::default()
    };
    let paths: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
    let inputs = file::expand_selected(&paths, &selection).map_err(anyhow::Error::msg)?;
    let found = print_records(&inputs, &wanted)?;
    let missing: Vec<&String> = wanted
        .ids
        .keys()
        .filter(|id| !found.contains(*id))
        .collect();
    eprintln!("{} of {} events found", found.len(), wanted.ids.len());
    for id in &missing {
        eprintln!("not found: {}", trailwatch::escape::shown(id, 128));
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints each wanted record once (the first copy), as compact JSON; returns the ids found.
fn print_records(inputs: &[file::Input], wanted: &Wanted) -> Result<BTreeSet<String>> {
    let mut table = FieldTable::new();
    let event_id = table.intern("eventID");
    let mut decoder = Decoder::new(&table, Limits::default());
    let mut found = BTreeSet::new();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut result: io::Result<()> = Ok(());
    for input in inputs {
        if found.len() == wanted.ids.len() {
            break;
        }
        let read = file::read_input(input, Default::default(), &mut decoder, &mut |item, loc| {
            let Ok(ev) = item else { return };
            let Some(id) = ev.get(event_id).text() else {
                return;
            };
            if !wanted.ids.contains_key(id) || found.contains(id) || result.is_err() {
                return;
            }
            found.insert(id.to_string());
            eprintln!("# {} at {loc}", trailwatch::escape::shown(id, 128));
            // Re-serialised, so control characters in the input stay escaped.
            let text = ev
                .whole_text()
                .map(str::to_string)
                .unwrap_or_else(|| trailwatch::escape::line(ev.raw_text().unwrap_or_default()));
            result = writeln!(out, "{text}");
        });
        if let Err(e) = read {
            eprintln!(
                "warning: {}: {}",
                trailwatch::escape::line(&input.name()),
                trailwatch::escape::line(&e.to_string())
            );
        }
    }
    result?;
    out.flush()?;
    Ok(found)
}
