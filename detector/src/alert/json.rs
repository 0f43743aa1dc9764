//! Alerts as JSON lines, written directly: the same bytes as `serde_json::to_string` of the
//! derived `Serialize` (a property test holds the two equal), without serde_json's escaping of
//! every string byte by byte, which was most of what rendering cost the thread that keeps
//! replay's state (52 of its 60 M instructions for 50,000 events).

use super::lineage::{EventRef, Lineage};
use super::{Alert, AlertKind, AlertRule, EventSummary};
use std::collections::BTreeMap;

/// The alert as one line of JSON, byte for byte as serde_json writes it.
pub fn native(alert: &Alert) -> String {
    // Taken apart whole, so that a field added to an alert does not compile until it is written.
    let Alert {
        alert_id,
        kind,
        rule: rule_block,
        first_seen,
        last_seen,
        count,
        group_key,
        events,
        related_alert_id,
        held_back,
        held_alert_ids,
        lineage: events_behind,
    } = alert;
    let mut out = String::with_capacity(1024);
    let o = &mut out;
    o.push_str("{\"alert_id\":");
    string(o, alert_id);
    o.push_str(",\"kind\":");
    o.push_str(match kind {
        AlertKind::Alert => "\"alert\"",
        AlertKind::Rollup => "\"rollup\"",
        AlertKind::Storm => "\"storm\"",
    });
    o.push_str(",\"rule\":");
    rule(o, rule_block);
    o.push_str(",\"first_seen\":");
    optional(o, first_seen);
    o.push_str(",\"last_seen\":");
    optional(o, last_seen);
    o.push_str(",\"count\":");
    number(o, *count);
    o.push_str(",\"group_key\":");
    string(o, group_key);
    o.push_str(",\"events\":");
    list(o, events, summary);
    if let Some(id) = related_alert_id {
        o.push_str(",\"related_alert_id\":");
        string(o, id);
    }
    if let Some(held) = held_back {
        o.push_str(",\"held_back\":");
        map(o, held, |o, n| number(o, *n));
    }
    if let Some(ids) = held_alert_ids {
        o.push_str(",\"held_alert_ids\":");
        list(o, ids, |o, id| string(o, id));
    }
    o.push_str(",\"lineage\":");
    lineage(o, events_behind);
    o.push('}');
    out
}

fn rule(o: &mut String, rule: &AlertRule) {
    let AlertRule {
        id,
        title,
        level,
        tags,
    } = rule;
    o.push_str("{\"id\":");
    string(o, id);
    o.push_str(",\"title\":");
    string(o, title);
    o.push_str(",\"level\":");
    string(o, level);
    o.push_str(",\"tags\":");
    list(o, tags, |o, tag| string(o, tag));
    o.push('}');
}

fn summary(o: &mut String, e: &EventSummary) {
    let EventSummary {
        event_id,
        event_time,
        event_source,
        event_name,
        account,
        region,
        principal_type,
        principal_arn,
        source_ip,
        error_code,
        fields,
    } = e;
    let named = [
        ("{\"eventID\":", event_id),
        (",\"eventTime\":", event_time),
        (",\"eventSource\":", event_source),
        (",\"eventName\":", event_name),
        (",\"account\":", account),
        (",\"region\":", region),
        (",\"principal_type\":", principal_type),
        (",\"principal_arn\":", principal_arn),
        (",\"sourceIPAddress\":", source_ip),
        (",\"errorCode\":", error_code),
    ];
    for (key, value) in named {
        o.push_str(key);
        optional(o, value);
    }
    if !fields.is_empty() {
        o.push_str(",\"fields\":");
        map(o, fields, |o, v| string(o, v));
    }
    o.push('}');
}

fn lineage(o: &mut String, l: &Lineage) {
    let Lineage { events, total } = l;
    o.push_str("{\"events\":");
    list(o, events, event_ref);
    o.push_str(",\"total\":");
    number(o, *total);
    o.push('}');
}

fn event_ref(o: &mut String, r: &EventRef) {
    let EventRef {
        event_time,
        event_id,
    } = r;
    o.push_str("{\"eventTime\":");
    optional(o, event_time);
    o.push_str(",\"eventID\":");
    string(o, event_id);
    o.push('}');
}

fn list<T>(o: &mut String, items: &[T], item: impl Fn(&mut String, &T)) {
    o.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        item(o, x);
    }
    o.push(']');
}

fn map<V>(o: &mut String, entries: &BTreeMap<String, V>, value: impl Fn(&mut String, &V)) {
    o.push('{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        string(o, k);
        o.push(':');
        value(o, v);
    }
    o.push('}');
}

fn optional(o: &mut String, s: &Option<String>) {
    match s {
        Some(s) => string(o, s),
        None => o.push_str("null"),
    }
}

fn number(o: &mut String, n: u64) {
    o.push_str(itoa::Buffer::new().format(n));
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn string(o: &mut String, s: &str) {
    crate::event::text::write_json_string(s, o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text with what JSON must escape, and what it must not, well represented.
    fn text() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            4 => any::<char>(),
            1 => prop::sample::select(vec!['"', '\\', '\n', '\t', '\u{0}', '\u{1f}', '\u{7f}', '/', 'é', '\u{2028}']),
        ];
        prop::collection::vec(c, 0..24).prop_map(String::from_iter)
    }

    fn maybe() -> impl Strategy<Value = Option<String>> {
        prop::option::of(text())
    }

    fn summary() -> impl Strategy<Value = EventSummary> {
        (
            prop::collection::vec(maybe(), 10),
            prop::collection::btree_map(text(), text(), 0..3),
        )
            .prop_map(|(v, fields)| EventSummary {
                event_id: v[0].clone(),
                event_time: v[1].clone(),
                event_source: v[2].clone(),
                event_name: v[3].clone(),
                account: v[4].clone(),
                region: v[5].clone(),
                principal_type: v[6].clone(),
                principal_arn: v[7].clone(),
                source_ip: v[8].clone(),
                error_code: v[9].clone(),
                fields,
            })
    }

    fn alert() -> impl Strategy<Value = Alert> {
        let rule = (text(), text(), text(), prop::collection::vec(text(), 0..3));
        let refs = prop::collection::vec((maybe(), text()), 0..3);
        let extra = (
            maybe(),
            prop::option::of(prop::collection::btree_map(text(), any::<u64>(), 0..3)),
            prop::option::of(prop::collection::vec(text(), 0..3)),
        );
        (
            (text(), 0..3u8, rule, maybe(), maybe(), any::<u64>(), text()),
            prop::collection::vec(summary(), 0..3),
            extra,
            (refs, any::<u64>()),
        )
            .prop_map(
                |((id, kind, rule, first, last, count, group), events, extra, (refs, total))| {
                    Alert {
                        alert_id: id,
                        kind: [AlertKind::Alert, AlertKind::Rollup, AlertKind::Storm]
                            [usize::from(kind)],
                        rule: std::sync::Arc::new(AlertRule {
                            id: rule.0,
                            title: rule.1,
                            level: rule.2,
                            tags: rule.3,
                        }),
                        first_seen: first,
                        last_seen: last,
                        count,
                        group_key: group,
                        events,
                        related_alert_id: extra.0,
                        held_back: extra.1,
                        held_alert_ids: extra.2,
                        lineage: Lineage {
                            events: refs
                                .into_iter()
                                .map(|(event_time, event_id)| EventRef {
                                    event_time,
                                    event_id,
                                })
                                .collect(),
                            total,
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn an_alert_is_written_as_serde_json_writes_it(a in alert()) {
            prop_assert_eq!(native(&a), serde_json::to_string(&a).unwrap());
        }
    }

    #[test]
    fn every_control_character_and_quote_is_escaped_as_serde_json_escapes_it() {
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '\u{2028}'])
            .collect();
        let mut o = String::new();
        string(&mut o, &all);
        assert_eq!(o, serde_json::to_string(&all).unwrap());
        let mut o = String::new();
        string(&mut o, "plain text, nothing to escape");
        assert_eq!(o, "\"plain text, nothing to escape\"");
    }
}
