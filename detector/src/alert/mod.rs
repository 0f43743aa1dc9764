//! Alerts: what a rule hit becomes, carrying only the minimum necessary of the event.
//!
//! An alert names the rule and the event by identity, account, region, source address,
//! event source/name, times and error code. Free-form values (`requestParameters`,
//! `responseElements`, user agents, error messages) are never copied: they may hold PHI.

pub mod gate;
pub mod human;
pub mod json;
pub mod ledger;
pub mod lineage;
pub mod ocsf;
pub mod order;
pub mod shape;

use crate::engine::{CompiledRule, RuleSet};
use crate::event::{Event, FieldId, FieldValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// What alerts take from events: the summary fields, each rule's allow-listed fields and the
/// fields its repeats are grouped by, as ids in a rule set's table.
#[derive(Debug, Clone)]
pub struct SummaryFields {
    base: Vec<FieldId>,
    allowed: Vec<Vec<Allowed>>,
    suppress_by: Vec<Vec<(String, FieldId)>>,
    hmac_key: Option<std::sync::Arc<[u8]>>,
}

#[derive(Debug, Clone)]
struct Allowed {
    name: String,
    id: FieldId,
    hashed: bool,
}

impl SummaryFields {
    /// Makes `set` capture every field alerts need (before decoding starts).
    pub fn register(set: &mut RuleSet) -> Self {
        let base = set.capture(SUMMARY_FIELDS);
        let policies: Vec<crate::rule::policy::AlertPolicy> =
            set.rules().iter().map(|r| r.rule.policy.clone()).collect();
        let mut allowed = Vec::with_capacity(policies.len());
        let mut suppress_by = Vec::with_capacity(policies.len());
        for p in &policies {
            let mut fields = Vec::new();
            for (names, hashed) in [(&p.hashed_fields, true), (&p.clear_fields, false)] {
                for name in names {
                    let id = set.capture(&[name.as_str()])[0];
                    fields.push(Allowed {
                        name: name.clone(),
                        id,
                        hashed,
                    });
                }
            }
            allowed.push(fields);
            let by = p.suppress_by();
            let ids = set.capture(&by.iter().map(String::as_str).collect::<Vec<_>>());
            suppress_by.push(by.into_iter().zip(ids).collect());
        }
        SummaryFields {
            base,
            allowed,
            suppress_by,
            hmac_key: None,
        }
    }

    /// Sets the secret that keys the hashes of allow-listed fields.
    pub fn with_hmac_key(mut self, key: Option<Vec<u8>>) -> Self {
        self.hmac_key = key.map(Into::into);
        self
    }

    /// Whether a secret is set.
    pub fn has_hmac_key(&self) -> bool {
        self.hmac_key.is_some()
    }

    /// The secret, if set (state files are sealed with a key derived from it).
    pub fn hmac_key(&self) -> Option<&[u8]> {
        self.hmac_key.as_deref()
    }

    /// The rules (by index) that allow-list hashed fields.
    pub fn rules_with_hashed_fields(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.allowed.len()).filter(|&r| self.allowed[r].iter().any(|a| a.hashed))
    }

    fn text(&self, ev: &Event<'_>, i: usize) -> Option<String> {
        let id = *self.base.get(i)?;
        match ev.get(id) {
            FieldValue::Text(t) => Some(shape::checked(SUMMARY_FIELDS[i], t)),
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
            fields: BTreeMap::new(),
        }
    }

    /// The summary of `ev` for rule `rule` (an index), with the fields the rule allow-lists.
    /// Without a secret, hashed fields are left out rather than copied.
    pub fn summarize_for(&self, rule: usize, ev: &Event<'_>) -> EventSummary {
        let mut summary = self.summarize(ev);
        for a in self.allowed.get(rule).into_iter().flatten() {
            let Some(value) = ev.get(a.id).text() else {
                continue;
            };
            let value = match (a.hashed, &self.hmac_key) {
                (false, _) => value.to_string(),
                (true, Some(key)) => keyed_hash(key, value),
                (true, None) => continue,
            };
            summary.fields.insert(a.name.clone(), value);
        }
        summary
    }

    /// The key a rule's repeats are merged by: its suppression fields and their values, as JSON.
    pub fn suppress_key(&self, rule: usize, ev: &Event<'_>) -> String {
        let mut key = serde_json::Map::new();
        for (name, id) in self.suppress_by.get(rule).into_iter().flatten() {
            let value = ev.get(*id).text().map(|t| shape::checked(name, t));
            key.insert(name.clone(), value.into());
        }
        serde_json::Value::Object(key).to_string()
    }
}

/// Reads the HMAC secret from `path` (surrounding whitespace trimmed; at least 16 bytes, so a
/// guessable key cannot make the hashes reversible by brute force).
pub fn read_hmac_key(path: &std::path::Path) -> Result<Vec<u8>, HmacKeyError> {
    let err = |message: String| HmacKeyError {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let key = bytes.trim_ascii().to_vec();
    if key.len() < 16 {
        return Err(err(format!(
            "the HMAC key has {} bytes; use at least 16 (e.g. `openssl rand -hex 32`)",
            key.len()
        )));
    }
    Ok(key)
}

/// An HMAC key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct HmacKeyError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// `hmac-sha256:` and the hex HMAC-SHA256 of `value` under `key`: equal values stay comparable
/// across alerts without the value itself leaving the account.
pub fn keyed_hash(key: &[u8], value: &str) -> String {
    use hmac::Mac;
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("hmac-sha256:{}", crate::sink::archive::object::hex(&digest))
}

/// The minimum necessary of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Fields the rule allow-lists: keyed hashes (`hmac-sha256:…`) unless listed as clear.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// The first detection of an incident.
    #[default]
    Alert,
    /// The repeats a suppression window merged, reported when it closes.
    Rollup,
    /// Alerts held back by rate limits, summarised.
    Storm,
}

/// An alert as written to sinks (schema: docs/alert-schema.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id: the same rule and group always give the same id.
    pub alert_id: String,
    /// What the alert reports.
    #[serde(default)]
    pub kind: AlertKind,
    /// The rule (shared by the alerts of one rule).
    pub rule: Arc<AlertRule>,
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
    /// For a roll-up: the alert whose repeats it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_alert_id: Option<String>,
    /// For a storm: alerts held back, per rule id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<BTreeMap<String, u64>>,
    /// For a storm: the ids of the alerts held back (at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_alert_ids: Option<Vec<String>>,
    /// The events that made the alert: ids and times of at most 20, and how many.
    #[serde(default)]
    pub lineage: lineage::Lineage,
}

impl Alert {
    /// The alert for one stateless rule hit.
    pub fn for_hit(rule: &CompiledRule, summary: EventSummary) -> Alert {
        let group_key = summary.identity();
        let refs = summary.event_id.clone().map(|event_id| lineage::EventRef {
            event_time: summary.event_time.clone(),
            event_id,
        });
        Alert {
            lineage: lineage::Lineage::of(refs, 1),
            alert_id: alert_id(rule.id(), &group_key, ""),
            rule: rule.alert_rule(),
            first_seen: summary.event_time.clone(),
            last_seen: summary.event_time.clone(),
            count: 1,
            group_key,
            events: vec![summary],
            kind: AlertKind::Alert,
            related_alert_id: None,
            held_back: None,
            held_alert_ids: None,
        }
    }
}

impl Alert {
    /// The alert for a correlation that fired: keyed by the group and the window's start.
    pub fn for_correlation(
        corr: &crate::engine::CompiledCorrelation,
        hit: &crate::window::CorrelationHit,
    ) -> Alert {
        let group_key = checked_group(&hit.group_json()).to_string();
        let window_start = crate::window::format_time(hit.window_start);
        // An early correlation reports every event that meets its condition, each once (by
        // its time); without a suppression window to merge them, those of one timespan
        // (epoch-aligned) make one alert.
        let id_window = match (corr.early, corr.rule.policy.suppress_seconds) {
            (false, _) => window_start.clone(),
            (true, 0) if corr.timespan > 0 => {
                crate::window::format_time(hit.time.div_euclid(corr.timespan) * corr.timespan)
            }
            (true, _) => crate::window::format_time(hit.time),
        };
        Alert {
            alert_id: alert_id(corr.id(), &group_key, &id_window),
            rule: Arc::new(AlertRule {
                id: corr.id().to_string(),
                title: corr.rule.title.clone(),
                level: corr
                    .rule
                    .level
                    .unwrap_or(crate::rule::Level::Medium)
                    .as_str()
                    .to_string(),
                tags: corr.rule.tags.clone(),
            }),
            first_seen: Some(window_start),
            last_seen: hit
                .origin
                .event_time
                .clone()
                .or_else(|| Some(crate::window::format_time(hit.time))),
            count: hit.value.max(0.0).round() as u64,
            group_key,
            events: Vec::new(),
            lineage: lineage::Lineage::of(
                hit.lineage.iter().map(|(t, id)| lineage::EventRef {
                    event_time: Some(crate::window::format_time(*t)),
                    event_id: shape::checked("eventID", id),
                }),
                hit.events,
            ),
            kind: AlertKind::Alert,
            related_alert_id: None,
            held_back: None,
            held_alert_ids: None,
        }
    }
}

#[cfg(test)]
impl Alert {
    /// A plain alert for tests: rule `rule` (also its title), id and group key `id`, one event
    /// at `time`, nothing else.
    pub(crate) fn bare(rule: &str, id: &str, time: &str) -> Alert {
        Alert {
            alert_id: id.into(),
            kind: AlertKind::Alert,
            rule: Arc::new(AlertRule {
                id: rule.into(),
                title: rule.into(),
                level: "high".into(),
                tags: vec![],
            }),
            first_seen: Some(time.into()),
            last_seen: Some(time.into()),
            count: 1,
            group_key: id.into(),
            events: vec![],
            related_alert_id: None,
            held_back: None,
            held_alert_ids: None,
            lineage: Default::default(),
        }
    }
}

/// How alerts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// trailwatch's own schema (docs/alert-schema.md).
    #[default]
    Native,
    /// OCSF Detection Finding (class 2004).
    Ocsf,
}

impl Format {
    /// Parses `native` or `ocsf`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "native" => Some(Format::Native),
            "ocsf" => Some(Format::Ocsf),
            _ => None,
        }
    }

    /// The alert as one line of JSON.
    pub fn render(self, alert: &Alert) -> serde_json::Result<String> {
        match self {
            Format::Native => Ok(json::native(alert)),
            Format::Ocsf => serde_json::to_string(&ocsf::finding(alert)),
        }
    }
}

/// The gate candidate for a stateless rule's hit on `ev` (`index` is the rule's index).
pub fn hit_candidate(
    rule: &CompiledRule,
    index: usize,
    ev: &Event<'_>,
    fields: &SummaryFields,
) -> gate::Candidate {
    let summary = fields.summarize_for(index, ev);
    let time = summary
        .event_time
        .as_deref()
        .and_then(crate::window::event_time);
    gate::Candidate::new(
        Alert::for_hit(rule, summary),
        fields.suppress_key(index, ev),
        time,
        rule.rule.policy.suppress_seconds,
    )
}

/// The gate candidate for a correlation that fired; its repeats are merged per group.
pub fn correlation_candidate(
    corr: &crate::engine::CompiledCorrelation,
    hit: &crate::window::CorrelationHit,
) -> gate::Candidate {
    let alert = Alert::for_correlation(corr, hit);
    let key = alert.group_key.clone();
    gate::Candidate::new(
        alert,
        key,
        Some(hit.time),
        corr.rule.policy.suppress_seconds,
    )
}

/// A correlation group with each known field's value checked for its shape.
fn checked_group(group: &serde_json::Value) -> serde_json::Value {
    let Some(map) = group.as_object() else {
        return group.clone();
    };
    let checked = map
        .iter()
        .map(|(k, v)| {
            let v = match v.as_str() {
                Some(t) => serde_json::Value::String(shape::checked(k, t)),
                None => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_json::Value::Object(checked)
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
    crate::sink::archive::object::hex(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hashes_depend_on_key_and_value() {
        let h = keyed_hash(b"k1", "sg-123");
        assert!(h.starts_with("hmac-sha256:") && h.len() == 12 + 64, "{h}");
        assert_eq!(h, keyed_hash(b"k1", "sg-123"));
        assert_ne!(h, keyed_hash(b"k2", "sg-123"));
        assert_ne!(h, keyed_hash(b"k1", "sg-124"));
        // RFC 4231 test case 2.
        assert_eq!(
            keyed_hash(b"Jefe", "what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn alert_ids_are_stable_and_distinct() {
        let a = alert_id("r1", "g", "w");
        assert_eq!(a, alert_id("r1", "g", "w"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id("r2", "g", "w"));
        assert_ne!(alert_id("r1", "ab", "c"), alert_id("r1", "a", "bc"));
    }
}
