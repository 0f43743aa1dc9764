//! Alerts as OCSF 1.1 Detection Findings (class 2004), for Security Lake and Security Hub.
//!
//! The mapping keeps the same minimum-necessary content as the native alert: the finding's uid
//! is the alert id, the analytic is the rule, and each event becomes an evidence with its actor,
//! source address, API call and cloud account. Roll-ups are "Update" activities of the finding
//! they count; storms are findings of their own. The events behind an alert are its
//! `finding_info.related_events` (by eventID), with times and total under `unmapped.lineage`.

use super::{Alert, AlertKind, EventSummary};
use serde_json::{json, Map, Value};

/// The OCSF schema version written.
pub const OCSF_VERSION: &str = "1.1.0";

const CLASS_UID: u32 = 2004;

/// The Detection Finding for `alert`.
pub fn finding(alert: &Alert) -> Value {
    let (activity_id, activity) = match alert.kind {
        AlertKind::Rollup => (2, "Update"),
        _ => (1, "Create"),
    };
    let (severity_id, severity) = severity(&alert.rule.level);
    let first = alert.first_seen.as_deref().and_then(epoch_ms);
    let last = alert.last_seen.as_deref().and_then(epoch_ms);
    let mut f = json!({
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "time": last.or(first).unwrap_or(0),
        "message": alert.rule.title,
        "count": alert.count,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "trailwatch",
                "vendor_name": "trailwatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": alert.alert_id,
        },
        "finding_info": finding_info(alert, first, last),
        "evidences": alert.events.iter().map(evidence).collect::<Vec<_>>(),
        "unmapped": unmapped(alert),
    });
    let obj = f.as_object_mut().expect("a JSON object literal");
    if let Some(t) = first {
        obj.insert("start_time".into(), t.into());
    }
    if let Some(t) = last {
        obj.insert("end_time".into(), t.into());
    }
    if let Some(cloud) = alert.events.first().map(cloud) {
        obj.insert("cloud".into(), cloud);
    }
    f
}

fn finding_info(alert: &Alert, first: Option<i64>, last: Option<i64>) -> Value {
    let mut info = json!({
        "uid": alert.alert_id,
        "title": alert.rule.title,
        "types": alert.rule.tags,
        "analytic": {
            "uid": alert.rule.id,
            "name": alert.rule.title,
            "type_id": 1,
            "type": "Rule",
        },
    });
    let obj = info.as_object_mut().expect("a JSON object literal");
    if let Some(t) = first {
        obj.insert("first_seen_time".into(), t.into());
    }
    if let Some(t) = last {
        obj.insert("last_seen_time".into(), t.into());
    }
    let related: Vec<Value> = alert
        .lineage
        .events
        .iter()
        .map(|e| json!({"uid": e.event_id, "product_uid": "cloudtrail"}))
        .collect();
    if !related.is_empty() {
        obj.insert("related_events".into(), related.into());
    }
    info
}

/// OCSF severity: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical.
fn severity(level: &str) -> (u8, &'static str) {
    match level {
        "informational" => (1, "Informational"),
        "low" => (2, "Low"),
        "high" => (4, "High"),
        "critical" => (5, "Critical"),
        _ => (3, "Medium"),
    }
}

fn evidence(e: &EventSummary) -> Value {
    let mut ev = Map::new();
    if e.principal_arn.is_some() || e.principal_type.is_some() {
        ev.insert(
            "actor".into(),
            json!({"user": {"uid": e.principal_arn, "type": e.principal_type}}),
        );
    }
    if let Some(ip) = &e.source_ip {
        ev.insert("src_endpoint".into(), json!({ "ip": ip }));
    }
    let mut api = json!({
        "operation": e.event_name,
        "service": {"name": e.event_source},
        "request": {"uid": e.event_id},
    });
    if let Some(code) = &e.error_code {
        api["response"] = json!({ "error": code });
    }
    ev.insert("api".into(), api);
    if !e.fields.is_empty() {
        ev.insert("data".into(), json!(e.fields));
    }
    Value::Object(ev)
}

fn cloud(e: &EventSummary) -> Value {
    json!({
        "provider": "AWS",
        "region": e.region,
        "account": {"uid": e.account, "type_id": 10, "type": "AWS Account"},
    })
}

/// What OCSF has no attribute for: the group key, and a storm's held-back counts.
fn unmapped(alert: &Alert) -> Value {
    let mut u = json!({
        "trailwatch_kind": alert.kind,
        "group_key": alert.group_key,
    });
    if let Some(related) = &alert.related_alert_id {
        u["related_alert_id"] = json!(related);
    }
    if let Some(held) = &alert.held_back {
        u["held_back"] = json!(held);
    }
    if let Some(ids) = &alert.held_alert_ids {
        u["held_alert_ids"] = json!(ids);
    }
    u["lineage"] = json!(alert.lineage);
    u
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn epoch_ms(text: &str) -> Option<i64> {
    crate::window::event_time(text).map(|s| s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertRule;

    fn sample(kind: AlertKind) -> Alert {
        Alert {
            alert_id: "abc".into(),
            kind,
            rule: std::sync::Arc::new(AlertRule {
                id: "r1".into(),
                title: "Root sign-in".into(),
                level: "critical".into(),
                tags: vec!["attack.t1078".into()],
            }),
            first_seen: Some("2024-01-01T00:00:00Z".into()),
            last_seen: Some("2024-01-01T00:01:00Z".into()),
            count: 1,
            group_key: "{}".into(),
            events: vec![EventSummary {
                event_id: Some("e1".into()),
                event_time: Some("2024-01-01T00:00:00Z".into()),
                event_source: Some("signin.amazonaws.com".into()),
                event_name: Some("ConsoleLogin".into()),
                account: Some("111122223333".into()),
                region: Some("us-east-1".into()),
                principal_type: Some("Root".into()),
                principal_arn: Some("arn:aws:iam::111122223333:root".into()),
                source_ip: Some("192.0.2.1".into()),
                error_code: None,
                fields: Default::default(),
            }],
            related_alert_id: (kind == AlertKind::Rollup).then(|| "first".into()),
            held_back: None,
            held_alert_ids: None,
            lineage: Default::default(),
        }
    }

    #[test]
    fn required_attributes_are_present() {
        let f = finding(&sample(AlertKind::Alert));
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["category_uid"], 2);
        assert_eq!(f["type_uid"], 200401);
        assert_eq!(f["severity_id"], 5);
        assert_eq!(f["time"], 1_704_067_260_000i64);
        assert_eq!(f["metadata"]["version"], OCSF_VERSION);
        assert_eq!(f["metadata"]["product"]["name"], "trailwatch");
        assert_eq!(f["finding_info"]["uid"], "abc");
        assert_eq!(f["finding_info"]["analytic"]["uid"], "r1");
        assert_eq!(f["finding_info"]["first_seen_time"], 1_704_067_200_000i64);
        assert_eq!(f["cloud"]["provider"], "AWS");
        assert_eq!(f["cloud"]["account"]["uid"], "111122223333");
        let e = &f["evidences"][0];
        assert_eq!(e["src_endpoint"]["ip"], "192.0.2.1");
        assert_eq!(e["api"]["operation"], "ConsoleLogin");
        assert_eq!(e["actor"]["user"]["type"], "Root");
    }

    #[test]
    fn a_rollup_updates_its_finding() {
        let f = finding(&sample(AlertKind::Rollup));
        assert_eq!(f["activity_id"], 2);
        assert_eq!(f["type_uid"], 200402);
        assert_eq!(f["unmapped"]["related_alert_id"], "first");
        assert_eq!(f["unmapped"]["trailwatch_kind"], "rollup");
    }
}
