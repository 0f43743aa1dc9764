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

/// The JSON values of a JSON-lines file.
pub(crate) fn json_lines(path: &Path) -> Result<Vec<Value>> {
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

/// The alerts (by index) that meet `expect` for rule `id`, or `None` if it is not met.
///
/// A group expectation needs an alert of the rule with that group. An event expectation needs
/// first alerts of the rule carrying its events, and their roll-ups, counting exactly its events
/// (a suppression window merges one principal's repeats; one on each side of a window boundary
/// makes two alerts).
fn meeting(expect: &Value, id: &str, alerts: &[Value]) -> Option<Vec<usize>> {
    let of_rule = |a: &Value| a["rule"]["id"] == id;
    let Some(events) = expect["event_ids"].as_array().filter(|e| !e.is_empty()) else {
        let found: Vec<usize> = (0..alerts.len())
            .filter(|&i| of_rule(&alerts[i]) && group_of(&alerts[i]) == expect["group"])
            .collect();
        return (!found.is_empty()).then_some(found);
    };
    let carries = |a: &Value| {
        a["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| events.contains(&e["eventID"])))
    };
    let mut used = Vec::new();
    let mut counted = 0u64;
    for (i, a) in alerts.iter().enumerate() {
        if !of_rule(a) || a["kind"] == "rollup" || !carries(a) {
            continue;
        }
        used.push(i);
        let rollup = alerts
            .iter()
            .position(|r| r["kind"] == "rollup" && r["related_alert_id"] == a["alert_id"]);
        match rollup {
            Some(r) => {
                used.push(r);
                counted += alerts[r]["count"].as_u64().unwrap_or(0);
            }
            None => counted += 1,
        }
    }
    (counted == events.len() as u64).then_some(used)
}

/// The group an alert names (its `group_key`, parsed).
pub(crate) fn group_of(alert: &Value) -> Value {
    alert["group_key"]
        .as_str()
        .and_then(|g| serde_json::from_str(g).ok())
        .unwrap_or_default()
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
        match meeting(&expect, id, &alerts) {
            Some(found) => {
                found.into_iter().for_each(|i| used[i] = true);
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
