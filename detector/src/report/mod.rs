//! `trailwatch report`: what an auditor asks of the archive (or of a replay) for a period,
//! per account: alerts by control over time, failed access attempts, security configuration
//! changes, PHI access by principal, the top principals and addresses, and the monitoring
//! coverage (hours with events per account and region, silent periods, the service's own
//! gaps), with the rule sets in force. Every summary row names the alerts behind it.
//!
//! The report is a list of tables; [`html`] renders it as one self-contained page and
//! [`csv`] as one CSV file per table.

pub mod csv;
pub mod html;

use crate::alert::{Alert, AlertKind};
use crate::sink::archive::Coverage;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Rule tags that name the report's categories (rules/README.md, "Audit categories").
pub const FAILED_ACCESS: &str = "audit.failed-access";
/// See [`FAILED_ACCESS`].
pub const CONFIG_CHANGE: &str = "audit.config-change";
/// See [`FAILED_ACCESS`].
pub const PHI_ACCESS: &str = "audit.phi-access";
/// Tag prefixes of the controls alerts are counted by.
pub const CONTROLS: [&str; 2] = ["cis.cloudwatch.", "hipaa.164.312."];

/// A rule set that was in force: from the archive's `rules` records, or the replay's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesInForce {
    /// When it took over (RFC 3339); empty for a replay.
    pub at: String,
    /// `start`, `reload` or `replay`.
    pub reason: String,
    /// Hex SHA-256 of the rule files.
    pub hash: String,
    /// Detection rules.
    pub rules: u64,
    /// Correlation rules.
    pub correlations: u64,
    /// trailwatch's version.
    pub version: String,
}

/// What a report is made from.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Every alert (any period: the report selects).
    pub alerts: Vec<Alert>,
    /// Events by account, region and hour (repeated hours add up).
    pub coverage: Vec<Coverage>,
    /// Rule sets in force, in time order.
    pub rules: Vec<RulesInForce>,
    /// When each archive object was sealed, per writer (Unix seconds): the service running.
    pub sealed: BTreeMap<String, Vec<i64>>,
    /// Where it came from, for the report's header.
    pub source: String,
    /// The archive check's verdict, when one ran.
    pub integrity: Option<String>,
    /// Archive records (or objects) that could not be read as what they should be.
    pub unreadable: u64,
    /// Archive objects left out because they fail verification with the key.
    pub excluded: u64,
}

impl Evidence {
    /// Takes one archive record.
    pub fn add_record(&mut self, r: &Value) {
        match r["kind"].as_str() {
            Some("alert") => match serde_json::from_value::<Alert>(r["alert"].clone()) {
                Ok(a) => self.alerts.push(a),
                Err(_) => self.unreadable += 1,
            },
            Some("batch") => {
                for c in r["coverage"].as_array().into_iter().flatten() {
                    match serde_json::from_value::<Coverage>(c.clone()) {
                        Ok(c) => self.coverage.push(c),
                        Err(_) => self.unreadable += 1,
                    }
                }
            }
            Some("rules") if r["rules"]["hash"].is_string() => {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                self.rules.push(RulesInForce {
                    at: text(&r["at"]),
                    reason: text(&r["reason"]),
                    hash: text(&r["rules"]["hash"]),
                    rules: r["rules"]["rules"].as_u64().unwrap_or(0),
                    correlations: r["rules"]["correlations"].as_u64().unwrap_or(0),
                    version: text(&r["version"]),
                });
            }
            Some("rules") => self.unreadable += 1,
            _ => {}
        }
    }
}

/// A report's period, `[since, until)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Start, inclusive.
    pub since: i64,
    /// End, exclusive.
    pub until: i64,
}

/// What to report on and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The period; `None`: from the first to the last hour the evidence holds.
    pub period: Option<Period>,
    /// Hours without events of an account and region that make a silent period.
    pub silent_hours: i64,
    /// Rows of the top-principals and top-addresses tables.
    pub top: usize,
    /// Longest time between two archive objects of a writer that is not a monitoring gap.
    pub max_gap: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            period: None,
            silent_hours: 6,
            top: 25,
            max_gap: 900,
        }
    }
}

/// One row of a table, with the alerts it summarises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// Cells, in the table's column order.
    pub cells: Vec<String>,
    /// The alert ids behind the row.
    pub alert_ids: Vec<String>,
}

/// One table of the report.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Anchor and CSV file name.
    pub id: &'static str,
    /// Heading.
    pub title: &'static str,
    /// What it shows and how it is counted.
    pub about: String,
    /// Column names.
    pub columns: Vec<&'static str>,
    /// Rows.
    pub rows: Vec<Row>,
    /// Whether rows link to alerts (an `alert_ids` column in CSV, a list in HTML).
    pub linked: bool,
}

/// Alerts per day and level, for the chart.
pub type Daily = BTreeMap<String, BTreeMap<String, u64>>;

/// The report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The period.
    pub period: Period,
    /// When it was made (RFC 3339).
    pub generated: String,
    /// Where the evidence came from.
    pub source: String,
    /// The archive check's verdict.
    pub integrity: Option<String>,
    /// What the reader must know about the evidence (objects left out, records unreadable).
    pub notes: Vec<String>,
    /// Totals for the header: alerts, accounts, events.
    pub totals: Vec<(&'static str, String)>,
    /// Alerts per day by level.
    pub daily_alerts: Daily,
    /// Events per day (coverage).
    pub daily_events: BTreeMap<String, u64>,
    /// The tables, in reading order.
    pub tables: Vec<Table>,
}

/// An alert's facts as the report uses them.
struct Facts<'a> {
    alert: &'a Alert,
    time: i64,
    account: String,
    principal: String,
    address: String,
}

/// Times a report takes: 1970 to 2200. A record outside is damaged or forged, and one such
/// record would stretch the default period over millennia.
const PLAUSIBLE: std::ops::Range<i64> = 0..7_258_118_400;

fn facts(a: &Alert) -> Option<Facts<'_>> {
    let time = a
        .first_seen
        .as_deref()
        .and_then(crate::window::event_time)?;
    if !PLAUSIBLE.contains(&time) {
        return None;
    }
    let first = a.events.first();
    let group: Value = serde_json::from_str(&a.group_key).unwrap_or(Value::Null);
    let from_group = |k: &str| group[k].as_str().map(str::to_string);
    let account = first
        .and_then(|e| e.account.clone())
        .or_else(|| from_group("recipientAccountId"))
        .unwrap_or_else(|| "unknown".into());
    let principal = first
        .and_then(|e| e.principal_arn.clone())
        .or_else(|| from_group("userIdentity.arn"))
        .unwrap_or_else(|| "-".into());
    let address = first
        .and_then(|e| e.source_ip.clone())
        .or_else(|| from_group("sourceIPAddress"))
        .unwrap_or_else(|| "-".into());
    Some(Facts {
        alert: a,
        time,
        account,
        principal,
        address,
    })
}

fn tagged(a: &Alert, tag: &str) -> bool {
    a.rule.tags.iter().any(|t| t == tag)
}

/// The events behind an alert. Not its `count`: for a correlation that is the value that met
/// the condition (bytes summed, distinct values, km/h).
fn events(a: &Alert) -> u64 {
    a.lineage.total.max(1)
}

fn failed(a: &Alert) -> bool {
    tagged(a, FAILED_ACCESS) || a.events.iter().any(|e| e.error_code.is_some())
}

/// Builds the report over `evidence` for `opts`.
pub fn build(evidence: &Evidence, opts: &Options) -> Report {
    let mut seen = BTreeSet::new();
    let mut all: Vec<Facts<'_>> = evidence
        .alerts
        .iter()
        .filter(|a| seen.insert(a.alert_id.as_str()))
        .filter_map(facts)
        .collect();
    let period = opts
        .period
        .unwrap_or_else(|| span(&all, &evidence.coverage));
    all.retain(|f| f.time >= period.since && f.time < period.until);
    all.sort_by(|a, b| (a.time, &a.alert.alert_id).cmp(&(b.time, &b.alert.alert_id)));
    // An alert and its roll-up share a rule and group: both count, as the events they cover do.
    let coverage = hourly(&evidence.coverage, period);
    let mut tables = vec![
        accounts_table(&all, &coverage, period, opts),
        controls_table(&all),
        grouped(
            "failed-access",
            "Failed access attempts",
            "Alerts of rules tagged audit.failed-access, and alerts whose events carry an errorCode (access denied, failed sign-in), by account, principal and address.",
            all.iter().filter(|f| failed(f.alert)),
            |f| vec![f.account.clone(), f.principal.clone(), f.address.clone(), f.alert.rule.title.clone()],
            vec!["account", "principal", "address", "rule"],
            usize::MAX,
        ),
        changes_table(&all),
        grouped(
            "phi-access",
            "PHI data access by principal",
            "Alerts of rules tagged audit.phi-access (reads, deletions, first access, unusual places), by account and principal.",
            all.iter().filter(|f| tagged(f.alert, PHI_ACCESS)),
            |f| vec![f.account.clone(), f.principal.clone()],
            vec!["account", "principal"],
            usize::MAX,
        ),
        grouped(
            "top-principals",
            "Top principals",
            "The principals with the most alerts, any rule, per account.",
            all.iter(),
            |f| vec![f.account.clone(), f.principal.clone()],
            vec!["account", "principal"],
            opts.top,
        ),
        grouped(
            "top-addresses",
            "Top source addresses",
            "The source addresses with the most alerts, any rule, per account (an address seen in two accounts is a row in each).",
            all.iter(),
            |f| vec![f.account.clone(), f.address.clone()],
            vec!["account", "address"],
            opts.top,
        ),
        coverage_table(&coverage, period),
        silent_table(&coverage, period, opts.silent_hours),
        service_table(&evidence.sealed, period, opts.max_gap),
        rules_table(&evidence.rules),
        alerts_table(&all),
    ];
    tables.retain(|t| !(t.id == "service" && evidence.sealed.is_empty()));
    let mut daily_alerts: Daily = BTreeMap::new();
    for f in &all {
        *daily_alerts
            .entry(day(f.time))
            .or_default()
            .entry(f.alert.rule.level.clone())
            .or_default() += 1;
    }
    let mut daily_events = BTreeMap::new();
    for ((_, _), hours) in &coverage {
        for (h, n) in hours {
            let d: &mut u64 = daily_events.entry(day(h * 3600)).or_default();
            *d = d.saturating_add(*n);
        }
    }
    let accounts: BTreeSet<&str> = all
        .iter()
        .map(|f| f.account.as_str())
        .chain(coverage.keys().map(|(a, _)| a.as_str()))
        .collect();
    let events = daily_events
        .values()
        .fold(0u64, |a, n| a.saturating_add(*n));
    Report {
        period,
        generated: crate::sink::archive::object::now_rfc3339(),
        source: evidence.source.clone(),
        integrity: evidence.integrity.clone(),
        notes: notes(evidence),
        totals: vec![
            ("alerts", all.len().to_string()),
            ("accounts", accounts.len().to_string()),
            ("events examined", events.to_string()),
            ("rule sets in force", evidence.rules.len().to_string()),
        ],
        daily_alerts,
        daily_events,
        tables,
    }
}

fn notes(e: &Evidence) -> Vec<String> {
    let mut out = Vec::new();
    if e.excluded > 0 {
        out.push(format!("{} archive object(s) left out: they fail verification with the archive key (forged or altered); trailwatch verify-archive names them", e.excluded));
    }
    if e.unreadable > 0 {
        out.push(format!(
            "{} archive record(s) or object(s) could not be read and are not counted",
            e.unreadable
        ));
    }
    out
}

/// From the first to the end of the last hour the alerts and coverage hold.
fn span(all: &[Facts<'_>], coverage: &[Coverage]) -> Period {
    let hours = coverage.iter().filter_map(|c| hour_start(&c.hour));
    let times: Vec<i64> = all.iter().map(|f| f.time).chain(hours).collect();
    let since = times.iter().min().copied().unwrap_or(0).div_euclid(3600) * 3600;
    let until = (times.iter().max().copied().unwrap_or(0).div_euclid(3600) + 1) * 3600;
    Period { since, until }
}

/// `YYYY-MM-DDTHH` as Unix seconds, within the plausible times.
fn hour_start(hour: &str) -> Option<i64> {
    if hour.len() != 13 {
        return None;
    }
    crate::window::event_time(&format!("{hour}:00:00Z")).filter(|t| PLAUSIBLE.contains(t))
}

type Hourly = BTreeMap<(String, String), BTreeMap<i64, u64>>;

/// Events per account and region per hour (Unix seconds / 3600) inside the period.
fn hourly(coverage: &[Coverage], period: Period) -> Hourly {
    let mut out: Hourly = BTreeMap::new();
    for c in coverage {
        let Some(t) = hour_start(&c.hour) else {
            continue;
        };
        if t < period.since || t >= period.until {
            continue;
        }
        let n = out
            .entry((c.account.clone(), c.region.clone()))
            .or_default()
            .entry(t / 3600)
            .or_default();
        *n = n.saturating_add(c.events);
    }
    out
}

fn day(t: i64) -> String {
    crate::window::format_time(t)
        .get(..10)
        .unwrap_or_default()
        .to_string()
}

fn time(t: i64) -> String {
    crate::window::format_time(t)
}

fn ids<'a>(fs: impl Iterator<Item = &'a Facts<'a>>) -> Vec<String> {
    fs.map(|f| f.alert.alert_id.clone()).collect()
}

fn accounts_table(all: &[Facts<'_>], coverage: &Hourly, period: Period, opts: &Options) -> Table {
    let mut accounts: BTreeMap<&str, Vec<&Facts<'_>>> = BTreeMap::new();
    for f in all {
        accounts.entry(f.account.as_str()).or_default().push(f);
    }
    for (a, _) in coverage.keys() {
        accounts.entry(a.as_str()).or_default();
    }
    let hours = (period.until - period.since).max(0) / 3600;
    let rows = accounts
        .into_iter()
        .map(|(account, fs)| {
            let count =
                |p: &dyn Fn(&Alert) -> bool| fs.iter().filter(|f| p(f.alert)).count().to_string();
            let covered: BTreeSet<i64> = coverage
                .iter()
                .filter(|((a, _), _)| a == account)
                .flat_map(|(_, h)| h.keys().copied())
                .collect();
            let silent = coverage
                .iter()
                .filter(|((a, _), _)| a == account)
                .map(|(_, h)| silences(h, period, opts.silent_hours).len())
                .sum::<usize>();
            Row {
                cells: vec![
                    account.to_string(),
                    fs.len().to_string(),
                    count(&failed),
                    count(&|a| tagged(a, CONFIG_CHANGE)),
                    count(&|a| tagged(a, PHI_ACCESS)),
                    format!("{} of {hours}", covered.len()),
                    silent.to_string(),
                ],
                alert_ids: ids(fs.into_iter()),
            }
        })
        .collect();
    Table {
        id: "accounts",
        title: "Accounts",
        about: format!("Per account: alerts, the three audit categories, the hours of the period in which any region of the account delivered events, and its silent periods ({} hours or more without events in a region that delivers).", opts.silent_hours),
        columns: vec!["account", "alerts", "failed access", "configuration changes", "PHI access", "hours with events", "silent periods"],
        rows,
        linked: true,
    }
}

fn controls_table(all: &[Facts<'_>]) -> Table {
    let mut groups: BTreeMap<(String, String), Vec<&Facts<'_>>> = BTreeMap::new();
    for f in all {
        for t in &f.alert.rule.tags {
            if CONTROLS.iter().any(|p| t.starts_with(p)) {
                groups
                    .entry((f.account.clone(), t.clone()))
                    .or_default()
                    .push(f);
            }
        }
    }
    let rows = groups
        .into_iter()
        .map(|((account, control), fs)| {
            let mut days: BTreeMap<String, u64> = BTreeMap::new();
            for f in &fs {
                *days.entry(day(f.time)).or_default() += 1;
            }
            let by_day: Vec<String> = days.iter().map(|(d, n)| format!("{d}: {n}")).collect();
            Row {
                cells: vec![
                    account,
                    control,
                    fs.len().to_string(),
                    time(fs[0].time),
                    time(fs[fs.len() - 1].time),
                    by_day.join(", "),
                ],
                alert_ids: ids(fs.into_iter()),
            }
        })
        .collect();
    Table {
        id: "controls",
        title: "Alerts by control over time",
        about: "Alerts per account and control (rule tags cis.cloudwatch.* for the Security Hub CloudWatch controls, hipaa.164.312.* for the HIPAA technical safeguards); an alert counts under each control its rule names.".into(),
        columns: vec!["account", "control", "alerts", "first", "last", "alerts by day"],
        rows,
        linked: true,
    }
}

/// Rows of alerts grouped by `key`, most alerts first, at most `top`.
fn grouped<'a>(
    id: &'static str,
    title: &'static str,
    about: &str,
    fs: impl Iterator<Item = &'a Facts<'a>>,
    key: impl Fn(&Facts<'_>) -> Vec<String>,
    columns: Vec<&'static str>,
    top: usize,
) -> Table {
    let mut groups: BTreeMap<Vec<String>, Vec<&Facts<'_>>> = BTreeMap::new();
    for f in fs {
        groups.entry(key(f)).or_default().push(f);
    }
    let mut rows: Vec<(usize, Row)> = groups
        .into_iter()
        .map(|(mut cells, fs)| {
            let events = fs
                .iter()
                .fold(0u64, |a, f| a.saturating_add(events(f.alert)));
            let rules: BTreeSet<&str> = fs.iter().map(|f| f.alert.rule.title.as_str()).collect();
            let n = fs.len();
            cells.extend([
                n.to_string(),
                events.to_string(),
                time(fs[0].time),
                time(fs[n - 1].time),
            ]);
            if !columns.contains(&"rule") {
                cells.push(rules.into_iter().collect::<Vec<_>>().join("; "));
            }
            (
                n,
                Row {
                    cells,
                    alert_ids: ids(fs.into_iter()),
                },
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cells.cmp(&b.1.cells)));
    rows.truncate(top);
    let mut columns = columns;
    let has_rule = columns.contains(&"rule");
    columns.extend(["alerts", "events", "first", "last"]);
    if !has_rule {
        columns.push("rules");
    }
    Table {
        id,
        title,
        about: about.to_string(),
        columns,
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        linked: true,
    }
}

fn changes_table(all: &[Facts<'_>]) -> Table {
    let rows = all
        .iter()
        .filter(|f| tagged(f.alert, CONFIG_CHANGE))
        .map(|f| {
            let names: BTreeSet<&str> = f
                .alert
                .events
                .iter()
                .filter_map(|e| e.event_name.as_deref())
                .collect();
            Row {
                cells: vec![
                    time(f.time),
                    f.account.clone(),
                    f.alert.rule.title.clone(),
                    names.into_iter().collect::<Vec<_>>().join(", "),
                    f.principal.clone(),
                    f.address.clone(),
                    events(f.alert).to_string(),
                ],
                alert_ids: vec![f.alert.alert_id.clone()],
            }
        })
        .collect();
    Table {
        id: "config-changes",
        title: "Security configuration changes",
        about: "Every alert of rules tagged audit.config-change (IAM, CloudTrail, KMS, S3 bucket policies, Config, network and security groups, Organizations, security services), in time order.".into(),
        columns: vec!["time", "account", "rule", "API calls", "principal", "address", "events"],
        rows,
        linked: true,
    }
}

fn coverage_table(coverage: &Hourly, period: Period) -> Table {
    let hours = (period.until - period.since).max(0) / 3600;
    let rows = coverage
        .iter()
        .map(|((account, region), h)| Row {
            cells: vec![
                account.clone(),
                region.clone(),
                format!("{} of {hours}", h.len()),
                h.values()
                    .fold(0u64, |a, n| a.saturating_add(*n))
                    .to_string(),
                h.keys().next().map_or_else(String::new, |t| time(t * 3600)),
                h.keys()
                    .last()
                    .map_or_else(String::new, |t| time(t * 3600 + 3599)),
            ],
            alert_ids: Vec::new(),
        })
        .collect();
    Table {
        id: "coverage",
        title: "Monitoring coverage",
        about: "Events examined per account and region: the hours of the period with at least one event (by event time), the events, and the first and last hour seen.".into(),
        columns: vec!["account", "region", "hours with events", "events", "first", "last"],
        rows,
        linked: false,
    }
}

/// Runs of at least `min` hours without events inside the period: (first hour, hours).
fn silences(h: &BTreeMap<i64, u64>, period: Period, min: i64) -> Vec<(i64, i64)> {
    let (first, last) = (
        period.since.div_euclid(3600),
        (period.until - 1).div_euclid(3600),
    );
    let mut out = Vec::new();
    let mut from = first;
    for &hour in h.keys().chain(std::iter::once(&(last + 1))) {
        if hour - from >= min.max(1) {
            out.push((from, hour - from));
        }
        from = hour + 1;
    }
    out
}

fn silent_table(coverage: &Hourly, period: Period, min: i64) -> Table {
    let mut rows = Vec::new();
    for ((account, region), h) in coverage {
        for (from, hours) in silences(h, period, min) {
            rows.push(Row {
                cells: vec![
                    account.clone(),
                    region.clone(),
                    time(from * 3600),
                    time((from + hours) * 3600),
                    hours.to_string(),
                ],
                alert_ids: Vec::new(),
            });
        }
    }
    Table {
        id: "silent-periods",
        title: "Silent periods",
        about: format!("Stretches of {min} hours or more in which an account and region that delivers events in the period delivered none: the trail, its delivery or trailwatch may have stopped (the rule 'CloudTrail Events Stopped Arriving' alerts on this live)."),
        columns: vec!["account", "region", "from", "until", "hours"],
        rows,
        linked: false,
    }
}

fn service_table(sealed: &BTreeMap<String, Vec<i64>>, period: Period, max_gap: i64) -> Table {
    let mut rows = Vec::new();
    for (writer, times) in sealed {
        let mut times: Vec<i64> = times
            .iter()
            .copied()
            .filter(|t| *t >= period.since && *t < period.until)
            .collect();
        times.sort_unstable();
        let hours: BTreeSet<i64> = times.iter().map(|t| t / 3600).collect();
        let mut edges = vec![period.since];
        edges.extend(&times);
        edges.push(period.until);
        let gaps: Vec<String> = edges
            .windows(2)
            .filter(|w| w[1] - w[0] > max_gap)
            .map(|w| format!("{} to {}", time(w[0]), time(w[1])))
            .collect();
        rows.push(Row {
            cells: vec![
                writer.clone(),
                times.len().to_string(),
                format!(
                    "{} of {}",
                    hours.len(),
                    (period.until - period.since).max(0) / 3600
                ),
                gaps.len().to_string(),
                gaps.join("; "),
            ],
            alert_ids: Vec::new(),
        });
    }
    Table {
        id: "service",
        title: "The service's own coverage",
        about: format!("Archive objects sealed per instance (one at least every seal_every, a heartbeat when idle): hours of the period in which the instance ran, and stretches over {} minutes without an object (it was not running or not archiving).", max_gap / 60),
        columns: vec!["writer", "objects", "hours running", "gaps", "gaps (from, to)"],
        rows,
        linked: false,
    }
}

fn rules_table(rules: &[RulesInForce]) -> Table {
    let rows = rules
        .iter()
        .map(|r| Row {
            cells: vec![
                r.at.clone(),
                r.reason.clone(),
                r.hash.clone(),
                r.rules.to_string(),
                r.correlations.to_string(),
                r.version.clone(),
            ],
            alert_ids: Vec::new(),
        })
        .collect();
    Table {
        id: "rules",
        title: "Rule sets in force",
        about: "Every rule set the service ran, when it took over and why: the hash is SHA-256 over the rule and placeholder files by their names below the rule folders (`trailwatch check` on the same files gives the same).".into(),
        columns: vec!["from", "reason", "SHA-256 of the rule files", "rules", "correlations", "trailwatch"],
        rows,
        linked: false,
    }
}

fn alerts_table(all: &[Facts<'_>]) -> Table {
    let rows = all
        .iter()
        .map(|f| Row {
            cells: vec![
                f.alert.alert_id.clone(),
                time(f.time),
                f.account.clone(),
                match f.alert.kind {
                    AlertKind::Alert => "alert",
                    AlertKind::Rollup => "roll-up",
                    AlertKind::Storm => "storm",
                }
                .into(),
                f.alert.rule.level.clone(),
                f.alert.rule.title.clone(),
                f.principal.clone(),
                f.address.clone(),
                events(f.alert).to_string(),
            ],
            alert_ids: Vec::new(),
        })
        .collect();
    Table {
        id: "alerts",
        title: "Every alert of the period",
        about: "In event-time order; the summaries above link here.".into(),
        columns: vec![
            "alert id",
            "time",
            "account",
            "kind",
            "level",
            "rule",
            "principal",
            "address",
            "events",
        ],
        rows,
        linked: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, time: &str, count: u64) -> Value {
        serde_json::json!({
            "alert_id": id, "kind": "alert",
            "rule": {"id": "r", "title": "R", "level": "high", "tags": ["cis.cloudwatch.4", "audit.config-change"]},
            "first_seen": time, "last_seen": time, "count": count, "group_key": "{}",
            "events": [{"eventID": "e", "account": "111122223333", "principal_arn": "arn:aws:iam::111122223333:user/a"}],
            "lineage": {"events": [], "total": count}
        })
    }

    /// Over an archive every alert is evidence; the period picks (a replay also selects its
    /// input by the period).
    #[test]
    fn a_period_keeps_only_its_alerts() {
        let mut e = Evidence::default();
        for (id, time) in [
            ("before", "2026-11-01T23:59:59Z"),
            ("first", "2026-11-02T00:00:00Z"),
            ("last", "2026-11-02T23:59:59Z"),
            ("after", "2026-11-03T00:00:00Z"),
        ] {
            e.add_record(&serde_json::json!({"kind": "alert", "alert": alert(id, time, 1)}));
        }
        let period = Period {
            since: 1_793_577_600,
            until: 1_793_664_000,
        };
        let r = build(
            &e,
            &Options {
                period: Some(period),
                ..Options::default()
            },
        );
        assert_eq!(r.period, period);
        let alerts = r.tables.iter().find(|t| t.id == "alerts").unwrap();
        let ids: Vec<&str> = alerts.rows.iter().map(|r| r.cells[0].as_str()).collect();
        assert_eq!(ids, ["first", "last"]);
        assert_eq!(r.totals[0], ("alerts", "2".to_string()));
    }

    #[test]
    fn events_are_those_behind_an_alert_not_a_correlations_value() {
        let mut e = Evidence::default();
        // A value_sum correlation: 1.2 GB read in two events.
        let mut a = alert("a1", "2026-11-01T10:00:00Z", 1_258_291_200);
        a["lineage"]["total"] = 2.into();
        e.add_record(&serde_json::json!({"kind": "alert", "alert": a}));
        let r = build(&e, &Options::default());
        let cell = |table: &str, column: &str| {
            let t = r.tables.iter().find(|t| t.id == table).unwrap();
            let i = t.columns.iter().position(|c| *c == column).unwrap();
            t.rows[0].cells[i].clone()
        };
        for table in [
            "top-principals",
            "top-addresses",
            "config-changes",
            "alerts",
        ] {
            assert_eq!(cell(table, "events"), "2", "{table}");
        }
    }

    #[test]
    fn top_addresses_are_counted_per_account() {
        let mut e = Evidence::default();
        for (id, account, ip) in [
            ("a1", "111122223333", "203.0.113.7"),
            ("a2", "111122223333", "203.0.113.7"),
            ("a3", "444455556666", "203.0.113.7"),
        ] {
            let mut a = alert(id, "2026-11-01T10:00:00Z", 1);
            a["events"][0]["account"] = account.into();
            a["events"][0]["sourceIPAddress"] = ip.into();
            e.add_record(&serde_json::json!({"kind": "alert", "alert": a}));
        }
        let r = build(&e, &Options::default());
        let t = r.tables.iter().find(|t| t.id == "top-addresses").unwrap();
        assert_eq!(&t.columns[..3], ["account", "address", "alerts"]);
        let rows: Vec<(&[String], &[String])> = t
            .rows
            .iter()
            .map(|r| (&r.cells[..3], &r.alert_ids[..]))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    &["111122223333".into(), "203.0.113.7".into(), "2".into()][..],
                    &["a1".to_string(), "a2".into()][..]
                ),
                (
                    &["444455556666".into(), "203.0.113.7".into(), "1".into()][..],
                    &["a3".to_string()][..]
                ),
            ]
        );
    }

    #[test]
    fn hostile_evidence_gives_bounded_honest_numbers() {
        let mut e = Evidence::default();
        for r in [
            serde_json::json!({"kind": "alert", "alert": alert("a1", "2026-11-01T10:00:00Z", u64::MAX)}),
            serde_json::json!({"kind": "alert", "alert": alert("a2", "2026-11-01T11:00:00Z", u64::MAX)}),
            // The same id again, and times no archive can hold.
            serde_json::json!({"kind": "alert", "alert": alert("a1", "2026-11-01T12:00:00Z", 1)}),
            serde_json::json!({"kind": "alert", "alert": alert("far", "9999-12-31T23:59:59Z", 1)}),
            serde_json::json!({"kind": "batch", "coverage": [
                {"account": "111122223333", "region": "us-east-1", "hour": "2026-11-01T10", "events": u64::MAX},
                {"account": "111122223333", "region": "us-east-1", "hour": "2026-11-01T10", "events": u64::MAX},
                {"account": "111122223333", "region": "us-east-1", "hour": "0000-01-01T00", "events": 5},
                {"account": "111122223333", "region": "us-east-1", "hour": "not an hour", "events": 5}]}),
            serde_json::json!({"kind": "rules", "rules": {"hash": 7}}),
        ] {
            e.add_record(&r);
        }
        let r = build(&e, &Options::default());
        assert_eq!(
            (r.period.since, r.period.until),
            (1_793_527_200, 1_793_534_400),
            "two hours"
        );
        let alerts = r.tables.iter().find(|t| t.id == "alerts").unwrap();
        assert_eq!(alerts.rows.len(), 2, "a1 once, the far one left out");
        let changes = r.tables.iter().find(|t| t.id == "controls").unwrap();
        assert_eq!(changes.rows[0].cells[2], "2");
        let grouped = r.tables.iter().find(|t| t.id == "top-principals").unwrap();
        assert_eq!(
            grouped.rows[0].cells[3],
            u64::MAX.to_string(),
            "saturated, not wrapped"
        );
        assert_eq!(r.totals[2], ("events examined", u64::MAX.to_string()));
        assert_eq!(e.unreadable, 1, "the rules record without a hash");
        assert!(e.rules.is_empty());
    }
}
