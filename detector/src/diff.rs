//! Backtest diff: two rule sets over the same history, read once, and the alerts one gives
//! that the other does not, per rule. A rule change is reviewed by what it would have paged.

use crate::alert::{Alert, SummaryFields};
use crate::engine::RuleSet;
use crate::pipeline::{Pipeline, Settings};
use crate::source::file::{read_input, Input, InputError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

/// One side of the comparison: a rule set with the fields its alerts carry.
pub struct Side<'s> {
    /// The rules.
    pub set: &'s RuleSet,
    /// Registered with [`SummaryFields::register`] on `set`.
    pub summaries: SummaryFields,
}

/// How one rule's alerts changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    /// Rule id.
    pub rule_id: String,
    /// Rule title (the new one when both sides have the rule).
    pub title: String,
    /// Alerts before.
    pub before: u64,
    /// Alerts after.
    pub after: u64,
    /// Alerts only after.
    pub gained: u64,
    /// Alerts only before.
    pub lost: u64,
    /// Alerts with the same id whose count, times or events differ.
    pub changed: u64,
}

/// What differs between the two sides.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per rule, every rule with an alert on either side, by rule id.
    pub rules: Vec<RuleChange>,
    /// Alerts only the new rules give, in event-time order.
    pub gained: Vec<Alert>,
    /// Alerts only the old rules give, in event-time order.
    pub lost: Vec<Alert>,
    /// Alerts both give, differing: (before, after).
    pub changed: Vec<(Alert, Alert)>,
    /// Records read.
    pub events: u64,
    /// Unreadable records.
    pub errors: u64,
}

impl Report {
    /// Whether anything differs.
    pub fn differs(&self) -> bool {
        !(self.gained.is_empty() && self.lost.is_empty() && self.changed.is_empty())
    }
}

/// Replays `inputs` through both sides, reading each input once: every record the old rules'
/// decoder reads is decoded again, from its own text, for the new rules.
pub fn run(
    before: Side<'_>,
    after: Side<'_>,
    inputs: &[Input],
    settings: &Settings,
    locator: Option<Arc<dyn crate::geo::Locate>>,
    on_error: &mut dyn FnMut(&InputError),
) -> io::Result<Report> {
    let mut old = Pipeline::new(
        before.set,
        Some(before.summaries),
        settings,
        locator.clone(),
    );
    let mut new = Pipeline::new(after.set, Some(after.summaries), settings, locator);
    let (mut old_alerts, mut new_alerts): (Vec<Alert>, Vec<Alert>) = (Vec::new(), Vec::new());
    for input in inputs {
        let (decoder, stages) = old.parts();
        let read = read_input(
            input,
            Default::default(),
            decoder,
            &mut |item, _| match item {
                Ok(ev) => {
                    stages.event(ev, &mut old_alerts);
                    // Both sides see the same records; the copy is whole, so it decodes alike.
                    let _ = new.decode(
                        ev.raw_text().unwrap_or_default().as_bytes(),
                        &mut new_alerts,
                    );
                }
                Err(e) => {
                    stages.count_error(crate::replay::error_kind(&e));
                    on_error(&e);
                }
            },
        );
        if let Err(e) = read {
            let err = InputError::unreadable(input, &e);
            old.stages().count_error(crate::replay::error_kind(&err));
            on_error(&err);
        }
    }
    old.flush(&mut old_alerts);
    new.flush(&mut new_alerts);
    let mut report = compare(old_alerts, new_alerts);
    report.events = old.stats().events;
    report.errors = old.stats().errors.values().sum();
    Ok(report)
}

/// Compares two sides' alerts by id (an alert's id is its rule, group and window, so the same
/// detection has the same id on both sides).
pub fn compare(before: Vec<Alert>, after: Vec<Alert>) -> Report {
    let mut rules: BTreeMap<String, RuleChange> = BTreeMap::new();
    // The new side first: its titles name the rules.
    for a in &after {
        row(&mut rules, a).after += 1;
    }
    for a in &before {
        row(&mut rules, a).before += 1;
    }
    let mut old: HashMap<String, Alert> = before
        .into_iter()
        .map(|a| (a.alert_id.clone(), a))
        .collect();
    let mut report = Report::default();
    for a in after {
        match old.remove(&a.alert_id) {
            None => {
                row(&mut rules, &a).gained += 1;
                report.gained.push(a);
            }
            Some(b) if b != a => {
                row(&mut rules, &a).changed += 1;
                report.changed.push((b, a));
            }
            Some(_) => {}
        }
    }
    for (_, b) in old {
        row(&mut rules, &b).lost += 1;
        report.lost.push(b);
    }
    let order = |a: &Alert| (a.first_seen.clone(), a.alert_id.clone());
    report.gained.sort_by_key(order);
    report.lost.sort_by_key(order);
    report.changed.sort_by_key(|(_, a)| order(a));
    report.rules = rules.into_values().collect();
    report
}

/// The row of `a`'s rule, titled by the first alert seen of it.
fn row<'r>(rules: &'r mut BTreeMap<String, RuleChange>, a: &Alert) -> &'r mut RuleChange {
    rules
        .entry(a.rule.id.clone())
        .or_insert_with(|| RuleChange {
            rule_id: a.rule.id.clone(),
            title: a.rule.title.clone(),
            ..RuleChange::default()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, id: &str, count: u64) -> Alert {
        Alert {
            count,
            ..Alert::bare(rule, id, &format!("2026-01-01T00:00:0{count}Z"))
        }
    }

    #[test]
    fn alerts_are_gained_lost_or_changed_per_rule() {
        let before = vec![
            alert("r1", "a", 1),
            alert("r1", "b", 1),
            alert("r2", "c", 2),
        ];
        let after = vec![
            alert("r1", "a", 1),
            alert("r2", "c", 3),
            alert("r3", "d", 1),
        ];
        let r = compare(before, after);
        assert!(r.differs());
        let rows: Vec<(&str, u64, u64, u64, u64, u64)> = r
            .rules
            .iter()
            .map(|c| {
                (
                    c.rule_id.as_str(),
                    c.before,
                    c.after,
                    c.gained,
                    c.lost,
                    c.changed,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("r1", 2, 1, 0, 1, 0),
                ("r2", 1, 1, 0, 0, 1),
                ("r3", 0, 1, 1, 0, 0)
            ]
        );
        assert_eq!(r.lost[0].alert_id, "b");
        assert_eq!(r.gained[0].alert_id, "d");
        assert_eq!(r.changed[0].1.count, 3);
        assert!(!compare(vec![alert("r1", "a", 1)], vec![alert("r1", "a", 1)]).differs());
    }
}
