//! Alerts for an investigator rather than a machine: an aligned table (level colours on a
//! terminal only) or CSV, in event-time order, then a timeline per principal and per rule.
//!
//! Every value shown comes from a CloudTrail record an attacker may have written (a user name,
//! a session name), so table cells are escaped and cut like log lines, and CSV cells that a
//! spreadsheet would run as a formula are quoted as text.

use super::{Alert, AlertKind};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The widest a table cell gets, in characters; longer values are cut with `…`.
const CELL: usize = 60;

/// One alert as the columns show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    time: String,
    level: String,
    rule: String,
    principal: String,
    account: String,
    source: String,
    count: u64,
    kind: &'static str,
}

impl Row {
    fn of(a: &Alert) -> Row {
        let first = a.events.first();
        // Correlation alerts and roll-ups name their group instead of an event.
        let group: BTreeMap<String, String> =
            serde_json::from_str::<serde_json::Value>(&a.group_key)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                        .collect()
                })
                .unwrap_or_default();
        let from_group = |words: &[&str]| {
            group
                .iter()
                .find(|(k, _)| words.iter().any(|w| k.to_ascii_lowercase().contains(w)))
                .map(|(_, v)| v.clone())
        };
        let pick = |event: Option<&Option<String>>, words: &[&str]| {
            event
                .and_then(Clone::clone)
                .or_else(|| from_group(words))
                .unwrap_or_default()
        };
        Row {
            time: a.first_seen.clone().unwrap_or_default(),
            level: a.rule.level.clone(),
            rule: a.rule.title.clone(),
            principal: pick(
                first.map(|e| &e.principal_arn),
                &["arn", "username", "principal", "user"],
            ),
            account: pick(first.map(|e| &e.account), &["account"]),
            source: pick(first.map(|e| &e.source_ip), &["sourceip", "address"]),
            count: a.count,
            kind: match a.kind {
                AlertKind::Alert => "alert",
                AlertKind::Rollup => "roll-up",
                AlertKind::Storm => "storm",
            },
        }
    }
}

/// Rows in event-time order (ties by rule, then principal), so the table reads as a timeline.
fn rows(alerts: &[Alert]) -> Vec<Row> {
    let mut rows: Vec<Row> = alerts.iter().map(Row::of).collect();
    rows.sort_by(|a, b| (&a.time, &a.rule, &a.principal).cmp(&(&b.time, &b.rule, &b.principal)));
    rows
}

const HEADER: [&str; 8] = [
    "time",
    "level",
    "rule",
    "principal",
    "account",
    "source",
    "count",
    "kind",
];

fn cells(r: &Row) -> [String; 8] {
    [
        r.time.clone(),
        r.level.clone(),
        r.rule.clone(),
        r.principal.clone(),
        r.account.clone(),
        r.source.clone(),
        r.count.to_string(),
        r.kind.to_string(),
    ]
}

/// ANSI colour of a level.
fn colour(level: &str) -> &'static str {
    match level {
        "critical" => "\x1b[1;31m",
        "high" => "\x1b[31m",
        "medium" => "\x1b[33m",
        "low" => "\x1b[36m",
        _ => "",
    }
}

/// The alerts as an aligned table and the timeline summary; `colour` only for a terminal
/// (and never when `NO_COLOR` is set: the caller decides).
pub fn table(alerts: &[Alert], colour_levels: bool) -> String {
    let rows: Vec<[String; 8]> = rows(alerts)
        .iter()
        .map(|r| cells(r).map(|c| crate::escape::shown(&c, CELL)))
        .collect();
    let mut width = HEADER.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String; 8], level_colour: &str| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            let sep = if i + 1 == cells.len() { "" } else { "  " };
            if i == 1 && !level_colour.is_empty() {
                let _ = write!(text, "{level_colour}{c}\x1b[0m{:pad$}{sep}", "");
            } else {
                let _ = write!(text, "{c}{:pad$}{sep}", "");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &HEADER.map(String::from), "");
    for r in &rows {
        let c = if colour_levels { colour(&r[1]) } else { "" };
        line(&mut out, r, c);
    }
    out.push('\n');
    out.push_str(&timeline(alerts));
    out
}

/// The alerts as CSV (RFC 4180), header first, in event-time order.
pub fn csv(alerts: &[Alert]) -> String {
    let mut out = String::new();
    let mut put = |cells: &[String]| {
        let quoted: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&quoted.join(","));
        out.push_str("\r\n");
    };
    put(&HEADER.map(String::from));
    for r in rows(alerts) {
        put(&cells(&r));
    }
    out
}

/// One CSV cell (RFC 4180): quoted when it holds a separator, quote or line break; a value a
/// spreadsheet would evaluate (`=`, `+`, `-`, `@` and more after it, or a tab or carriage
/// return first) is made text with `'`; control characters are replaced, as in the HTML report.
pub fn csv_cell(value: &str) -> String {
    let mut value: String = value
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\t' | '\r') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    let formula = value.len() > 1 && value.starts_with(['=', '+', '-', '@'])
        || value.starts_with(['\t', '\r']);
    if formula {
        value.insert(0, '\'');
    }
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Per principal and per rule: how many alerts (roll-ups and storms apart: they recount
/// events an alert already reported), over which span of event time.
pub fn timeline(alerts: &[Alert]) -> String {
    #[derive(Default)]
    struct Span {
        alerts: usize,
        later: usize,
        first: String,
        last: String,
        other: std::collections::BTreeSet<String>,
    }
    let mut by_principal: BTreeMap<String, Span> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, Span> = BTreeMap::new();
    for r in rows(alerts) {
        let principal = if r.principal.is_empty() {
            "(none)".to_string()
        } else {
            r.principal.clone()
        };
        for (map, key, other) in [
            (&mut by_principal, principal.clone(), r.rule.clone()),
            (&mut by_rule, r.rule.clone(), principal),
        ] {
            let s = map.entry(key).or_default();
            if r.kind == "alert" {
                s.alerts += 1;
            } else {
                s.later += 1;
            }
            if s.first.is_empty() || (!r.time.is_empty() && r.time < s.first) {
                s.first = r.time.clone();
            }
            s.last = s.last.clone().max(r.time.clone());
            s.other.insert(other);
        }
    }
    let mut out = String::new();
    for (title, map, other) in [
        ("By principal", &by_principal, "rules"),
        ("By rule", &by_rule, "principals"),
    ] {
        let _ = writeln!(out, "{title}:");
        for (key, s) in map {
            let _ = writeln!(
                out,
                "  {}  {} alerts, {} roll-ups or storms, {} to {}, {} {other}",
                crate::escape::shown(key, CELL),
                s.alerts,
                s.later,
                s.first,
                s.last,
                s.other.len()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertRule, EventSummary};

    fn alert(time: &str, level: &str, rule: &str, arn: &str, count: u64) -> Alert {
        let summary = EventSummary {
            event_id: Some(format!("{rule}-{time}")),
            event_time: Some(time.to_string()),
            event_source: None,
            event_name: None,
            account: Some("111122223333".into()),
            region: None,
            principal_type: None,
            principal_arn: Some(arn.to_string()),
            source_ip: Some("203.0.113.9".into()),
            error_code: None,
            fields: Default::default(),
        };
        Alert {
            alert_id: format!("id-{rule}-{time}"),
            kind: AlertKind::Alert,
            rule: std::sync::Arc::new(AlertRule {
                id: rule.to_string(),
                title: rule.to_string(),
                level: level.to_string(),
                tags: vec![],
            }),
            first_seen: Some(time.to_string()),
            last_seen: Some(time.to_string()),
            count,
            group_key: "x".into(),
            events: vec![summary],
            related_alert_id: None,
            held_back: None,
            held_alert_ids: None,
            lineage: Default::default(),
        }
    }

    fn sample() -> Vec<Alert> {
        vec![
            alert(
                "2024-01-01T00:05:00Z",
                "high",
                "Root User Activity",
                "arn:aws:iam::1:root",
                1,
            ),
            alert(
                "2024-01-01T00:01:00Z",
                "medium",
                "IAM Policy Changed",
                "arn:aws:iam::1:user/bob",
                3,
            ),
        ]
    }

    #[test]
    fn the_table_is_aligned_in_time_order_with_a_timeline() {
        let text = table(&sample(), false);
        let expected = "\
time                  level   rule                principal                account       source       count  kind
2024-01-01T00:01:00Z  medium  IAM Policy Changed  arn:aws:iam::1:user/bob  111122223333  203.0.113.9  3      alert
2024-01-01T00:05:00Z  high    Root User Activity  arn:aws:iam::1:root      111122223333  203.0.113.9  1      alert

By principal:
  arn:aws:iam::1:root  1 alerts, 0 roll-ups or storms, 2024-01-01T00:05:00Z to 2024-01-01T00:05:00Z, 1 rules
  arn:aws:iam::1:user/bob  1 alerts, 0 roll-ups or storms, 2024-01-01T00:01:00Z to 2024-01-01T00:01:00Z, 1 rules
By rule:
  IAM Policy Changed  1 alerts, 0 roll-ups or storms, 2024-01-01T00:01:00Z to 2024-01-01T00:01:00Z, 1 principals
  Root User Activity  1 alerts, 0 roll-ups or storms, 2024-01-01T00:05:00Z to 2024-01-01T00:05:00Z, 1 principals
";
        assert_eq!(text, expected);
        assert!(!text.contains('\x1b'));
        let coloured = table(&sample(), true);
        assert!(coloured.contains("\x1b[31mhigh\x1b[0m"), "{coloured}");
    }

    #[test]
    fn csv_quotes_and_defuses_what_an_attacker_wrote() {
        let mut alerts = sample();
        alerts[0].events[0].principal_arn = Some("=HYPERLINK(\"http://x\",\"a,b\")".into());
        let text = csv(&alerts);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "time,level,rule,principal,account,source,count,kind"
        );
        assert_eq!(
            lines[1],
            "2024-01-01T00:01:00Z,medium,IAM Policy Changed,arn:aws:iam::1:user/bob,111122223333,203.0.113.9,3,alert"
        );
        assert_eq!(
            lines[2],
            "2024-01-01T00:05:00Z,high,Root User Activity,\"'=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\",111122223333,203.0.113.9,1,alert"
        );
    }

    #[test]
    fn terminal_controls_in_a_user_name_are_escaped_in_the_table() {
        let mut alerts = sample();
        alerts[0].events[0].principal_arn = Some("evil\x1b]0;pwned\x07".into());
        let text = table(&alerts, false);
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
    }

    #[test]
    fn correlation_alerts_show_their_group() {
        let mut a = sample().remove(0);
        a.events.clear();
        a.group_key =
            r#"{"recipientAccountId":"444455556666","userIdentity.arn":"arn:aws:iam::4:user/eve"}"#
                .into();
        let r = Row::of(&a);
        assert_eq!(
            (r.principal.as_str(), r.account.as_str()),
            ("arn:aws:iam::4:user/eve", "444455556666")
        );
    }
}
