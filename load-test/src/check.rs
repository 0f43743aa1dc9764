//! Checking a run's alerts against the ground truth of the injected scenarios.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// What was found, missed and raised unexpectedly.
#[derive(Debug, Default)]
pub struct Report {
    /// Expectations met.
    pub found: Vec<Value>,
    /// Expectations not met.
    pub missing: Vec<Value>,
    /// Expectations skipped (geo rules without a database).
    pub skipped: Vec<Value>,
    /// Alerts about scenario actors that nothing expected.
    pub unexpected: Vec<Value>,
}

impl Report {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "found": self.found.len(),
            "missing": self.missing,
            "skipped": self.skipped.len(),
            "unexpected": self.unexpected,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario alerts: {} found, {} missing, {} skipped (no geoip), {} unexpected",
            self.found.len(),
            self.missing.len(),
            self.skipped.len(),
            self.unexpected.len()
        )
    }
}

fn json_lines(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("{}: bad JSON line", path.display()))
        })
        .collect()
}

/// Rule file (relative to `rules`) → rule id.
fn rule_ids(rules: &Path) -> Result<BTreeMap<String, String>> {
    let (loaded, errors) =
        trailwatch::rule::load_paths(&[rules.to_path_buf()], &Default::default());
    if let Some(e) = errors.first() {
        anyhow::bail!("{e}");
    }
    Ok(loaded
        .iter()
        .filter_map(|r| {
            let rel = r
                .file
                .strip_prefix(rules)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            Some((rel, r.label().to_string()))
        })
        .collect())
}

/// Whether an alert concerns a scenario actor (names `scenario-*`, documentation addresses).
fn about_scenario(alert: &Value) -> bool {
    let text = alert.to_string();
    text.contains("scenario-")
        || ["192.0.2.", "198.51.100.", "203.0.113."]
            .iter()
            .any(|p| text.contains(p))
}

fn matches(expect: &Value, id: &str, alert: &Value) -> bool {
    if alert["rule"]["id"] != id {
        return false;
    }
    if let Some(event) = expect["event_id"].as_str() {
        return alert["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["eventID"] == event));
    }
    let group: Value = alert["group_key"]
        .as_str()
        .and_then(|g| serde_json::from_str(g).ok())
        .unwrap_or_default();
    group == expect["group"]
}

/// Compares `alerts` with `truth`.
pub fn check(truth: &Path, alerts: &Path, rules: &Path, geoip: bool) -> Result<Report> {
    let ids = rule_ids(rules)?;
    let alerts = json_lines(alerts)?;
    let mut used = vec![false; alerts.len()];
    let mut report = Report::default();
    for expect in json_lines(truth)? {
        let rule = expect["rule"].as_str().unwrap_or_default();
        let id = ids.get(rule).with_context(|| {
            format!(
                "the truth names {rule}, which is not in {}",
                rules.display()
            )
        })?;
        if expect["needs_geoip"] == true && !geoip {
            report.skipped.push(expect);
            continue;
        }
        match alerts.iter().position(|a| matches(&expect, id, a)) {
            Some(i) => {
                used[i] = true;
                // Several expectations may name the same alert (one event, two rules): mark all.
                for (j, a) in alerts.iter().enumerate() {
                    if matches(&expect, id, a) {
                        used[j] = true;
                    }
                }
                report.found.push(expect);
            }
            None => report.missing.push(expect),
        }
    }
    report.unexpected = alerts
        .iter()
        .zip(&used)
        .filter(|(a, u)| !**u && about_scenario(a))
        .map(|(a, _)| json!({"rule": a["rule"]["title"], "group_key": a["group_key"], "events": a["events"]}))
        .collect();
    Ok(report)
}
