//! Alerts: what a rule hit becomes, carrying only the minimum necessary of the event.
//!
//! An alert names the rule and the event by identity, account, region, source address,
//! event source/name, times and error code. Free-form values (`requestParameters`,
//! `responseElements`, user agents, error messages) are never copied: they may hold PHI.

pub mod ledger;

use crate::engine::{CompiledRule, RuleSet};
use crate::event::{Event, FieldId, FieldValue};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Fields of the event an alert may carry (the minimum necessary).
pub const SUMMARY_FIELDS: &[&str] = &[
    "eventID",
    "eventTime",
    "eventSource",
    "eventName",
    "recipientAccountId",
    "userIdentity.accountId",
    "awsRegion",
    "userIdentity.type",
    "userIdentity.arn",
    "sourceIPAddress",
    "errorCode",
];

/// Field ids of [`SUMMARY_FIELDS`] in a rule set's table.
#[derive(Debug, Clone)]
pub struct SummaryFields(Vec<FieldId>);

impl SummaryFields {
    /// Makes `set` capture the summary fields (before decoding starts).
    pub fn register(set: &mut RuleSet) -> Self {
        SummaryFields(set.capture(SUMMARY_FIELDS))
    }

    fn text(&self, ev: &Event<'_>, i: usize) -> Option<String> {
        let id = *self.0.get(i)?;
        match ev.get(id) {
            FieldValue::Text(t) => Some(t.to_string()),
            _ => None,
        }
    }

    /// The minimum-necessary view of `ev`.
    pub fn summarize(&self, ev: &Event<'_>) -> EventSummary {
        EventSummary {
            event_id: self.text(ev, 0),
            event_time: self.text(ev, 1),
            event_source: self.text(ev, 2),
            event_name: self.text(ev, 3),
            account: self.text(ev, 4).or_else(|| self.text(ev, 5)),
            region: self.text(ev, 6),
            principal_type: self.text(ev, 7),
            principal_arn: self.text(ev, 8),
            source_ip: self.text(ev, 9),
            error_code: self.text(ev, 10),
        }
    }
}

/// The minimum necessary of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    /// `eventID`.
    #[serde(rename = "eventID")]
    pub event_id: Option<String>,
    /// `eventTime`.
    #[serde(rename = "eventTime")]
    pub event_time: Option<String>,
    /// `eventSource`.
    #[serde(rename = "eventSource")]
    pub event_source: Option<String>,
    /// `eventName`.
    #[serde(rename = "eventName")]
    pub event_name: Option<String>,
    /// `recipientAccountId`, else `userIdentity.accountId`.
    pub account: Option<String>,
    /// `awsRegion`.
    pub region: Option<String>,
    /// `userIdentity.type`.
    pub principal_type: Option<String>,
    /// `userIdentity.arn`.
    pub principal_arn: Option<String>,
    /// `sourceIPAddress`.
    #[serde(rename = "sourceIPAddress")]
    pub source_ip: Option<String>,
    /// `errorCode`.
    #[serde(rename = "errorCode")]
    pub error_code: Option<String>,
}

impl EventSummary {
    /// A stable identity for the event: CloudTrail's `eventID` with its time, source and name,
    /// so duplicate deliveries of one event agree and reused test ids do not collide.
    pub fn identity(&self) -> String {
        let part = |v: &Option<String>| v.clone().unwrap_or_default();
        format!(
            "{}|{}|{}|{}",
            part(&self.event_id),
            part(&self.event_time),
            part(&self.event_source),
            part(&self.event_name)
        )
    }
}

/// The rule an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRule {
    /// Rule id.
    pub id: String,
    /// Rule title.
    pub title: String,
    /// Level.
    pub level: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// An alert as written to sinks (schema: docs/alert-schema.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Deterministic id: the same rule and group always give the same id.
    pub alert_id: String,
    /// The rule.
    pub rule: AlertRule,
    /// Earliest event time covered.
    pub first_seen: Option<String>,
    /// Latest event time covered.
    pub last_seen: Option<String>,
    /// How many events the alert covers.
    pub count: u64,
    /// What the alert groups by (for a single-event alert: the event identity).
    pub group_key: String,
    /// The events, minimum necessary only.
    pub events: Vec<EventSummary>,
}

impl Alert {
    /// The alert for one stateless rule hit.
    pub fn for_hit(rule: &CompiledRule, summary: EventSummary) -> Alert {
        let group_key = summary.identity();
        Alert {
            alert_id: alert_id(rule.id(), &group_key, ""),
            rule: AlertRule {
                id: rule.id().to_string(),
                title: rule.rule.title.clone(),
                level: rule.level().as_str().to_string(),
                tags: rule.rule.tags.clone(),
            },
            first_seen: summary.event_time.clone(),
            last_seen: summary.event_time.clone(),
            count: 1,
            group_key,
            events: vec![summary],
        }
    }
}

impl Alert {
    /// The alert for a correlation that fired: keyed by the group and the window's start.
    pub fn for_correlation(
        corr: &crate::engine::CompiledCorrelation,
        hit: &crate::window::CorrelationHit,
    ) -> Alert {
        let group_key = hit.group_json().to_string();
        let window_start = crate::window::format_time(hit.window_start);
        Alert {
            alert_id: alert_id(corr.id(), &group_key, &window_start),
            rule: AlertRule {
                id: corr.id().to_string(),
                title: corr.rule.title.clone(),
                level: corr
                    .rule
                    .level
                    .unwrap_or(crate::rule::Level::Medium)
                    .as_str()
                    .to_string(),
                tags: corr.rule.tags.clone(),
            },
            first_seen: Some(window_start),
            last_seen: hit
                .origin
                .event_time
                .clone()
                .or_else(|| Some(crate::window::format_time(hit.time))),
            count: hit.value.max(0.0).round() as u64,
            group_key,
            events: Vec::new(),
        }
    }
}

/// `hex(sha256(rule \x1f group \x1f window))`, first 32 hex digits.
pub fn alert_id(rule_id: &str, group_key: &str, window: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0x1f]);
    h.update(group_key.as_bytes());
    h.update([0x1f]);
    h.update(window.as_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_are_stable_and_distinct() {
        let a = alert_id("r1", "g", "w");
        assert_eq!(a, alert_id("r1", "g", "w"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id("r2", "g", "w"));
        assert_ne!(alert_id("r1", "ab", "c"), alert_id("r1", "a", "bc"));
    }
}
