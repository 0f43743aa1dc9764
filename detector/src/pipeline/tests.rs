//! The pipeline on the shipped rule pack: duplicates, reordering within the lateness,
//! snapshots and quiet streams.

use super::*;
use crate::alert::gate::Limits as AlertLimits;
use crate::alert::AlertKind;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;

const BURST: &str = "Console Sign-In Failures Burst for One User";
const BASE: i64 = 1_793_527_200; // 2026-11-01T10:00:00Z

fn pack() -> (RuleSet, SummaryFields) {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let (rules, errors) = crate::rule::load_paths(&[rules], &Default::default());
    assert!(errors.is_empty(), "{errors:?}");
    let mut set = RuleSet::compile(rules).unwrap();
    let summaries = SummaryFields::register(&mut set).with_hmac_key(Some(vec![7; 32]));
    (set, summaries)
}

fn settings() -> Settings {
    Settings {
        // No rate caps: what is compared is detection, not flood control.
        alert_limits: AlertLimits {
            per_rule_per_minute: 0,
            global_per_minute: 0,
        },
        ..Settings::default()
    }
}

/// A failed console sign-in of `user` in account `account`, `secs` after 10:00.
fn failed(id: &str, account: &str, user: &str, secs: i64) -> String {
    serde_json::json!({
        "eventVersion": "1.09", "eventID": id, "eventTime": crate::window::format_time(BASE + secs),
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9", "recipientAccountId": account,
        "userIdentity": {"type": "IAMUser", "accountId": account, "userName": user},
        "responseElements": {"ConsoleLogin": "Failure"}, "errorMessage": "Failed authentication"
    })
    .to_string()
}

/// A root API call in `account`.
fn root_call(id: &str, account: &str, secs: i64) -> String {
    serde_json::json!({
        "eventVersion": "1.09", "eventID": id, "eventTime": crate::window::format_time(BASE + secs),
        "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "eventType": "AwsApiCall",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.1", "recipientAccountId": account,
        "userIdentity": {"type": "Root", "accountId": account, "arn": format!("arn:aws:iam::{account}:root")}
    })
    .to_string()
}

type Seen = BTreeSet<(String, String, String, u64)>;

/// (alert id, rule title, kind, count) of everything `events` raise, input flushed.
fn alerts(set: &RuleSet, summaries: &SummaryFields, events: &[String]) -> Seen {
    let mut p = Pipeline::new(set, Some(summaries.clone()), &settings(), None);
    let mut out = Vec::new();
    for e in events {
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    p.flush(&mut out);
    let seen: Seen = out
        .iter()
        .map(|a| {
            let kind = format!("{:?}", a.kind);
            (a.alert_id.clone(), a.rule.title.clone(), kind, a.count)
        })
        .collect();
    assert_eq!(seen.len(), out.len(), "an alert id output twice: {out:?}");
    seen
}

fn titled<'a>(seen: &'a Seen, title: &str) -> Vec<&'a (String, String, String, u64)> {
    seen.iter().filter(|a| a.1 == title).collect()
}

#[test]
fn three_failures_delivered_twice_do_not_make_a_burst_of_six() {
    let (set, summaries) = pack();
    let three: Vec<String> = (0..3)
        .map(|i| failed(&format!("f{i}"), "111122223333", "dave", i * 30))
        .collect();
    let twice: Vec<String> = three.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
    let seen = alerts(&set, &summaries, &twice);
    assert!(titled(&seen, BURST).is_empty(), "{seen:?}");
    assert_eq!(seen, alerts(&set, &summaries, &three));
    let mut p = Pipeline::new(&set, Some(summaries), &settings(), None);
    for e in &twice {
        p.decode(e.as_bytes(), &mut ()).unwrap();
    }
    assert_eq!((p.stats().events, p.stats().duplicates), (6, 3));
}

#[test]
fn six_failures_make_one_burst_and_redelivery_changes_no_count() {
    let (set, summaries) = pack();
    let six: Vec<String> = (0..6)
        .map(|i| failed(&format!("f{i}"), "111122223333", "carol", i * 30))
        .collect();
    let clean = alerts(&set, &summaries, &six);
    let burst = titled(&clean, BURST);
    assert_eq!(burst.len(), 1, "{clean:?}");
    assert_eq!((burst[0].2.as_str(), burst[0].3), ("Alert", 6));
    let mut again = six.clone();
    again.extend(six.iter().rev().cloned());
    again.insert(2, six[0].clone());
    assert_eq!(alerts(&set, &summaries, &again), clean);
}

#[test]
fn a_restored_snapshot_remembers_the_events_it_saw() {
    let (set, summaries) = pack();
    let events: Vec<String> = (0..4)
        .map(|i| failed(&format!("f{i}"), "111122223333", "erin", i * 30))
        .collect();
    let mut p = Pipeline::new(&set, Some(summaries.clone()), &settings(), None);
    for e in &events {
        p.decode(e.as_bytes(), &mut ()).unwrap();
    }
    let bytes = p.snapshot();
    let mut q = Pipeline::new(&set, Some(summaries), &settings(), None);
    let r = q.restore(&bytes).unwrap();
    assert_eq!(r.event_ids, 4);
    let mut out = Vec::new();
    for e in &events {
        q.decode(e.as_bytes(), &mut out).unwrap();
    }
    assert_eq!(q.stats().duplicates, 4);
    // Two new failures make six with the four restored: the burst fires once.
    for i in 4..6 {
        q.decode(
            failed(&format!("f{i}"), "111122223333", "erin", i * 30).as_bytes(),
            &mut out,
        )
        .unwrap();
    }
    q.flush(&mut out);
    let bursts: Vec<_> = out.iter().filter(|a| a.rule.title == BURST).collect();
    assert_eq!(bursts.len(), 1, "{out:?}");
    assert_eq!(bursts[0].count, 6);
    assert!(q.restore(&bytes[..bytes.len() - 3]).is_err());
}

/// Root signs in to the console (`secs` after 10:00) and creates an access key a minute later.
fn root_takeover(account: &str, secs: i64) -> [String; 2] {
    let root = serde_json::json!({"type": "Root", "accountId": account, "arn": format!("arn:aws:iam::{account}:root")});
    let login = serde_json::json!({
        "eventVersion": "1.09", "eventID": format!("login-{secs}"), "eventTime": crate::window::format_time(BASE + secs),
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7", "recipientAccountId": account,
        "userIdentity": root, "responseElements": {"ConsoleLogin": "Success"}
    });
    let key = serde_json::json!({
        "eventVersion": "1.09", "eventID": format!("key-{secs}"), "eventTime": crate::window::format_time(BASE + secs + 60),
        "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey", "eventType": "AwsApiCall",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7", "recipientAccountId": account,
        "userIdentity": root, "requestParameters": {"userName": "svc"}
    });
    [login.to_string(), key.to_string()]
}

#[test]
fn a_burst_pages_on_the_event_that_completes_it() {
    let (set, summaries) = pack();
    let mut p = Pipeline::new(&set, Some(summaries), &settings(), None);
    let mut out = Vec::new();
    let burst = |out: &Vec<Alert>| out.iter().filter(|a| a.rule.title == BURST).count();
    for i in 0..5 {
        let e = failed(&format!("b{i}"), "111122223333", "frank", i * 10);
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    assert_eq!(burst(&out), 0, "five failures are not a burst of six");
    let sixth = failed("b5", "111122223333", "frank", 50);
    p.decode(sixth.as_bytes(), &mut out).unwrap();
    assert_eq!(
        burst(&out),
        1,
        "no reorder buffer or watermark delays it: {out:?}"
    );
    let page = out.iter().find(|a| a.rule.title == BURST).unwrap();
    assert_eq!(page.count, 6);
    // A seventh failure is a repeat of the same page: merged into its roll-up, not a new page.
    let seventh = failed("b6", "111122223333", "frank", 60);
    p.decode(seventh.as_bytes(), &mut out).unwrap();
    assert_eq!(burst(&out), 1);
    p.flush(&mut out);
    let rollup = out.iter().filter(|a| a.rule.title == BURST).nth(1).unwrap();
    assert_eq!(
        (rollup.kind, rollup.count),
        (AlertKind::Rollup, 2),
        "{rollup:?}"
    );
}

/// How many "Root Sign-In Followed by an IAM Change" alerts `out` holds.
fn takeover(out: &[Alert]) -> usize {
    out.iter()
        .filter(|a| a.rule.title == "Root Sign-In Followed by an IAM Change")
        .count()
}

#[test]
fn a_quiet_stream_pages_after_the_delivery_delay_without_another_event() {
    let (set, summaries) = pack();
    let s = Settings {
        max_delivery_delay: Some(120),
        ..settings()
    };
    let mut p = Pipeline::new(&set, Some(summaries), &s, None);
    let mut out = Vec::new();
    for e in root_takeover("111122223333", 0) {
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    assert_eq!(
        takeover(&out),
        0,
        "an ordered sequence waits for the watermark"
    );
    let seen = p.stages.quiet.newest.unwrap().1;
    p.stages.tick(seen + Duration::from_secs(100), &mut out);
    assert_eq!(takeover(&out), 0, "within the delivery delay nothing moves");
    p.stages.tick(seen + Duration::from_secs(200), &mut out);
    assert_eq!(takeover(&out), 1, "{out:?}");
    // An event older than the advanced watermark is late now.
    let late = failed("q-late", "111122223333", "frank", -100);
    p.decode(late.as_bytes(), &mut out).unwrap();
    assert_eq!(p.correlation_stats().late, 1);
}

/// A quiet stream handed on (a Kafka hand-over, a restart from the state file, a rule reload)
/// goes on with the quiet time its previous owner saw: its windows close without another event,
/// and no sooner than there. (Before, the next owner's quiet clock never started, and a
/// correlation waiting for the watermark of a stream that had gone quiet never paged.) The time
/// between snapshot and restore, when nobody read the stream, does not count: what queued then
/// is read as usual, not taken as late.
#[test]
fn a_quiet_stream_handed_on_pages_when_its_previous_owner_would_have() {
    let (set, summaries) = pack();
    let s = Settings {
        max_delivery_delay: Some(120),
        ..settings()
    };
    let mut p = Pipeline::new(&set, Some(summaries.clone()), &s, None);
    let mut out = Vec::new();
    for e in root_takeover("111122223333", 0) {
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    assert_eq!(takeover(&out), 0);
    // The previous owner has seen the stream quiet for 60 s of its 120.
    let newest = p.stages.quiet.newest.unwrap().0;
    let quiet_since = Instant::now() - Duration::from_secs(60);
    p.stages.quiet.newest = Some((newest, quiet_since));
    let fresh = || Pipeline::new(&set, Some(summaries.clone()), &s, None);

    let mut next = fresh();
    let restored_at = Instant::now();
    next.restore(&p.snapshot()).unwrap();
    let (t, since) = next.stages.quiet.newest.expect("the quiet clock goes on");
    assert_eq!(t, newest);
    let expected = restored_at - Duration::from_secs(60);
    let drift = since.max(expected) - since.min(expected);
    assert!(drift < Duration::from_secs(1), "{drift:?}");
    next.stages.tick(since + Duration::from_secs(100), &mut out);
    assert_eq!(takeover(&out), 0, "within the delivery delay nothing moves");
    next.stages.tick(since + Duration::from_secs(200), &mut out);
    assert_eq!(takeover(&out), 1, "{out:?}");
    // The watermark it reached travels too: an event its previous owner would count late is
    // late at the next owner, before any tick there.
    let mut again = fresh();
    again.restore(&next.snapshot()).unwrap();
    let late = failed("q-late", "111122223333", "frank", -100);
    again.decode(late.as_bytes(), &mut out).unwrap();
    assert_eq!(again.correlation_stats().late, 1);

    // A snapshot of an older build (no quiet time), or one whose quiet time is out of range:
    // the clock starts at the restore, late but not lost.
    let st = &p.stages;
    let older = p.sealed(state::encode(
        &st.correlator.snapshot(),
        &st.gate.save(),
        &st.dedup.save(),
    ));
    let odd = p.sealed(state::encode(
        &st.correlator.snapshot_quiet(Some(-5)),
        &st.gate.save(),
        &st.dedup.save(),
    ));
    for (bytes, n) in [(older, 2), (odd, 3)] {
        let before = Instant::now();
        let mut next = fresh();
        next.restore(&bytes).unwrap();
        let restarted = next.stages.quiet.newest.unwrap().1;
        assert!(restarted >= before);
        next.stages
            .tick(restarted + Duration::from_secs(100), &mut out);
        assert_eq!(takeover(&out), n - 1, "not before its delay");
        next.stages
            .tick(restarted + Duration::from_secs(200), &mut out);
        assert_eq!(takeover(&out), n, "{out:?}");
    }

    // A rule reload carries the clock as it is.
    let mut next = fresh().with_carried(p.into_carried()).unwrap();
    assert_eq!(next.stages.quiet.newest.unwrap().1, quiet_since);
    next.stages
        .tick(quiet_since + Duration::from_secs(200), &mut out);
    assert_eq!(takeover(&out), 4, "{out:?}");
}

/// A stream of distinct events over 40 minutes: failures of three users in two accounts
/// (bursts and near misses) and root calls.
fn stream(picks: &[(u8, u16)]) -> Vec<(i64, String)> {
    picks
        .iter()
        .enumerate()
        .map(|(i, &(who, at))| {
            let t = i64::from(at % 2400);
            let id = format!("e{i}");
            let e = match who % 4 {
                0 => failed(&id, "111111111111", "alice", t),
                1 => failed(&id, "111111111111", "bob", t),
                2 => failed(&id, "222222222222", "alice", t),
                _ => root_call(&id, "222222222222", t),
            };
            (t, e)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any arrival order within the lateness and any duplication give the alerts of the
    /// clean, ordered input.
    #[test]
    fn reordering_within_the_lateness_and_duplicates_change_no_alert(
        picks in prop::collection::vec((any::<u8>(), any::<u16>()), 1..80),
        delays in prop::collection::vec(0i64..300, 160),
        copies in prop::collection::vec(0usize..3, 80),
    ) {
        let (set, summaries) = pack();
        let mut events = stream(&picks);
        events.sort_by_key(|(t, _)| *t);
        let ordered: Vec<String> = events.iter().map(|(_, e)| e.clone()).collect();
        // Each delivery arrives within the lateness (300 s) of its event time.
        let mut arrivals = Vec::new();
        for (i, (t, e)) in events.iter().enumerate() {
            for c in 0..=copies[i % copies.len()] {
                let delay = delays[(i * 2 + c) % delays.len()];
                arrivals.push((t + delay, i, c, e.clone()));
            }
        }
        arrivals.sort_by_key(|(at, i, c, _)| (*at, *i, *c));
        let shuffled: Vec<String> = arrivals.into_iter().map(|(.., e)| e).collect();
        let clean = alerts(&set, &summaries, &ordered);
        prop_assert_eq!(alerts(&set, &summaries, &shuffled), clean);
    }
}

#[test]
fn an_event_time_centuries_away_neither_panics_nor_stops_the_clocks() {
    let (set, summaries) = pack();
    let mut p = Pipeline::new(&set, Some(summaries), &settings(), None);
    let mut out = Vec::new();
    let before = failed("before", "111122223333", "erin", 0);
    let typo = failed("typo", "111122223333", "frank", 0).replace("2026-11-01", "9026-11-01");
    let delete = root_call("root-1", "111122223333", 10);
    for e in [before, typo, delete] {
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    assert!(
        out.iter().any(|a| a.rule.title.contains("Root")),
        "the batch-mate still alerts: {out:?}"
    );
    assert_eq!(p.stats().errors.get("future_event_time"), Some(&1));
    // The clocks did not jump: a burst of six at 10:01 still pages.
    for i in 0..6 {
        let e = failed(&format!("f{i}"), "111122223333", "frank", 60 + i);
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    assert_eq!(p.correlation_stats().late, 0);
    assert!(out.iter().any(|a| a.rule.title == BURST), "{out:?}");
}

/// An output with a bug: it panics on the hit of one event.
struct Brittle {
    event_id: crate::event::FieldId,
    alerts: Vec<Alert>,
}

impl Output for Brittle {
    fn hit(&mut self, _rule: usize, ev: &Event<'_>, _index: u64) {
        let id = ev.get(self.event_id).text().unwrap_or_default();
        assert!(id != "boom", "a bug triggered by one record");
    }
    fn alert(&mut self, alert: Alert) {
        self.alerts.push(alert);
    }
}

#[test]
fn a_panic_on_one_record_is_contained_and_counted() {
    let (set, summaries) = pack();
    let mut p = Pipeline::new(&set, Some(summaries), &settings(), None);
    let mut out = Brittle {
        event_id: set.event_id,
        alerts: Vec::new(),
    };
    for (id, account) in [
        ("root-a", "111122223333"),
        ("boom", "222233334444"),
        ("root-b", "333344445555"),
    ] {
        p.decode(root_call(id, account, 0).as_bytes(), &mut out)
            .unwrap();
    }
    assert_eq!(p.stats().errors.get("panic"), Some(&1));
    let roots: Vec<&str> = out
        .alerts
        .iter()
        .filter(|a| a.rule.title.contains("Root"))
        .filter_map(|a| a.events.first()?.account.as_deref())
        .collect();
    assert!(
        roots.contains(&"111122223333") && roots.contains(&"333344445555"),
        "the records before and after still alert: {roots:?}"
    );
}

#[test]
fn copied_fields_of_the_wrong_shape_never_reach_an_alert() {
    let (set, summaries) = pack();
    let mut p = Pipeline::new(&set, Some(summaries), &settings(), None);
    let mut out = Vec::new();
    let mut e: serde_json::Value =
        serde_json::from_str(&root_call("r1", "111122223333", 0)).unwrap();
    e["sourceIPAddress"] = serde_json::json!({"patient": "Jane Doe", "mrn": "12345"});
    e["awsRegion"] = serde_json::json!(["us-east-1", "PHI"]);
    p.decode(e.to_string().as_bytes(), &mut out).unwrap();
    let alert = out.iter().find(|a| a.rule.title.contains("Root")).unwrap();
    let text = serde_json::to_string(alert).unwrap();
    assert!(!text.contains("Jane") && !text.contains("PHI"), "{text}");
    let summary = &alert.events[0];
    assert_eq!(
        summary.source_ip.as_deref(),
        Some(crate::alert::shape::INVALID)
    );
    assert_eq!(
        summary.region.as_deref(),
        Some(crate::alert::shape::INVALID)
    );
    assert_eq!(summary.account.as_deref(), Some("111122223333"));
}

#[test]
fn saved_state_is_sealed_and_names_no_one() {
    let (set, summaries) = pack();
    let mut p = Pipeline::new(&set, Some(summaries.clone()), &settings(), None);
    let mut out = Vec::new();
    for i in 0..3 {
        let e = failed(&format!("s{i}"), "111122223333", "mallory", i * 10);
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    let (snap, gate) = (p.snapshot(), p.gate_state());
    for bytes in [&snap, &gate] {
        assert!(seal::is_sealed(bytes));
        assert!(
            !bytes.windows(7).any(|w| w == b"mallory"),
            "a name in the state"
        );
    }
    let mut q = Pipeline::new(&set, Some(summaries), &settings(), None);
    assert_eq!(q.restore(&snap).unwrap().event_ids, 3);
    q.restore_gate(&gate).unwrap();
    let other = SummaryFields::register(&mut pack().0).with_hmac_key(Some(vec![9; 32]));
    let mut r = Pipeline::new(&set, Some(other), &settings(), None);
    let err = r.restore(&snap).unwrap_err().to_string();
    assert!(err.contains("does not open with this HMAC key"), "{err}");
}

/// A successful console sign-in of `arn` from `ip`, `secs` after 10:00.
fn signed_in(id: &str, arn: &str, ip: &str, secs: i64) -> String {
    serde_json::json!({
        "eventVersion": "1.09", "eventID": id, "eventTime": crate::window::format_time(BASE + secs),
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "awsRegion": "us-east-1", "sourceIPAddress": ip, "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "accountId": "111122223333", "arn": arn, "userName": "x"},
        "responseElements": {"ConsoleLogin": "Success"}, "additionalEventData": {"MFAUsed": "Yes"}
    })
    .to_string()
}

/// Every kind of alert names the events that made it, and only events of its own: a geo
/// alert the two sign-ins of its principal, a correlation its group's failures, a roll-up the
/// repeats it merges, a storm the alerts it held back.
#[test]
fn every_alert_kind_names_its_own_events() {
    let (set, summaries) = pack();
    let place = |ip: &str, country: &str, lat: f64, lon: f64| {
        let loc = crate::geo::Location {
            country: country.into(),
            lat,
            lon,
            asn: None,
        };
        (ip.parse().unwrap(), loc)
    };
    let locator = crate::geo::MapLocator(
        [
            place("198.51.100.10", "US", 39.96, -83.0),
            place("203.0.113.30", "DE", 50.11, 8.68),
        ]
        .into_iter()
        .collect(),
    );
    let alice = "arn:aws:iam::111122223333:user/alice";
    let bob = "arn:aws:iam::111122223333:user/bob";
    let mut events = vec![
        signed_in("g1", alice, "198.51.100.10", 0),
        signed_in("g2", bob, "198.51.100.10", 10),
        signed_in("g3", alice, "203.0.113.30", 600), // Ohio to Frankfurt in 10 minutes
    ];
    for i in 0..6 {
        events.push(failed(&format!("f{i}"), "111122223333", "carol", 700 + i));
        events.push(failed(
            &format!("n{i}"),
            "111122223333",
            "dave",
            700 + i * 20,
        ));
    }
    // Root in three accounts within a minute: over the cap of two alerts a rule.
    for (i, account) in ["111111111111", "222222222222", "333333333333"]
        .iter()
        .enumerate()
    {
        events.push(root_call(&format!("r{i}"), account, 800 + i as i64));
    }
    let limits = AlertLimits {
        per_rule_per_minute: 2,
        global_per_minute: 0,
    };
    let mut p = Pipeline::new(
        &set,
        Some(summaries),
        &Settings {
            alert_limits: limits,
            ..Settings::default()
        },
        Some(Arc::new(locator)),
    );
    let mut out: Vec<Alert> = Vec::new();
    for e in &events {
        p.decode(e.as_bytes(), &mut out).unwrap();
    }
    p.flush(&mut out);
    let ids = |a: &Alert| -> Vec<String> {
        a.lineage
            .events
            .iter()
            .map(|e| e.event_id.clone())
            .collect()
    };
    let travel = out
        .iter()
        .find(|a| a.rule.title.starts_with("Impossible Travel"))
        .expect("impossible travel");
    assert_eq!(ids(travel), ["g1", "g3"], "alice's two sign-ins, not bob's");
    let titles: Vec<(&str, AlertKind, u64)> = out
        .iter()
        .map(|a| (a.rule.title.as_str(), a.kind, a.count))
        .collect();
    let burst = out
        .iter()
        .find(|a| a.rule.title == BURST)
        .unwrap_or_else(|| panic!("the burst: {titles:?}"));
    assert_eq!(ids(burst), ["f0", "f1", "f2", "f3", "f4", "f5"]);
    assert_eq!(burst.lineage.total, 6);
    let storm = out
        .iter()
        .find(|a| a.kind == AlertKind::Storm)
        .expect("a storm");
    assert!(storm.lineage.total >= storm.count, "{storm:?}");
    let rollup = |title: &str| {
        out.iter()
            .find(|a| a.kind == AlertKind::Rollup && a.rule.title == title)
            .unwrap_or_else(|| panic!("a roll-up of {title}: {titles:?}"))
    };
    // A single-event rule's repeats are one event each; a burst's overlapping windows share
    // events, counted once: the twelve failures from the address.
    let single = rollup("Console Authentication Failure");
    assert_eq!((single.count, single.lineage.total), (12, 12));
    let windows = rollup("Console Sign-In Failures Burst from One Address");
    assert_eq!((windows.count, windows.lineage.total), (3, 12));
    let input: BTreeSet<String> = events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap()["eventID"].to_string())
        .map(|s| s.trim_matches('"').to_string())
        .collect();
    for a in &out {
        assert!(!a.lineage.events.is_empty(), "{a:?}");
        for id in ids(a) {
            assert!(input.contains(&id), "{id} of {a:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// The cached date part of eventTime gives the same time as a full parse, for canonical
    /// times in any order and for anything else.
    #[test]
    fn cached_event_time_parsing_agrees_with_a_full_parse(
        texts in prop::collection::vec(
            prop_oneof![
                (0i64..4_000_000_000).prop_map(crate::window::format_time),
                (0i64..200_000).prop_map(|s| crate::window::format_time(BASE + s)),
                "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9]Z",
                ".{0,24}",
            ],
            1..40,
        ),
    ) {
        let (set, _) = pack();
        let mut p = Pipeline::new(&set, None, &settings(), None);
        for t in &texts {
            prop_assert_eq!(p.stages.prepare.parse_time(t), crate::window::event_time(t), "{}", t);
        }
    }
}
