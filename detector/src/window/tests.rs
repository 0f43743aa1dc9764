use super::*;
use crate::engine::MatchScratch;
use crate::event::{Decoder, Limits};
use crate::rule::{parse_file, Placeholders};
use std::path::Path;

const FAILED: &str = "title: failed console login\nid: failed\nname: failed_login\nlogsource: {product: aws}\ndetection:\n  sel: {eventName: ConsoleLogin, errorMessage: Failed authentication}\n  condition: sel\n";
const SUCCESS: &str = "title: console login\nid: success\nname: successful_login\nlogsource: {product: aws}\ndetection:\n  sel: {eventName: ConsoleLogin, responseElements.ConsoleLogin: Success}\n  condition: sel\n";

fn set(docs: &[&str]) -> RuleSet {
    let text = docs.join("---\n");
    let (rules, errs) = parse_file(Path::new("c.yml"), &text, &Placeholders::new());
    assert!(errs.is_empty(), "{errs:?}");
    RuleSet::compile(rules).unwrap()
}

/// An event at `t` seconds past 2024-01-01T00:00:00Z.
fn login(t: i64, user: &str, ip: &str, ok: bool) -> String {
    let time = format_time(1_704_067_200 + t);
    let outcome = if ok {
        r#""responseElements":{"ConsoleLogin":"Success"}"#
    } else {
        r#""errorMessage":"Failed authentication""#
    };
    format!(
        r#"{{"eventID":"{user}-{t}-{ok}","eventTime":"{time}","eventName":"ConsoleLogin","userIdentity":{{"userName":"{user}"}},"sourceIPAddress":"{ip}",{outcome}}}"#
    )
}

fn run_with(set: &RuleSet, opts: Options, events: &[String]) -> (Vec<CorrelationHit>, Stats) {
    feed_all(Correlator::new(set, opts), events)
}

/// Matches each event and feeds the hits to `corr`, then flushes; returns what fired and the
/// counters.
fn feed_all(mut corr: Correlator<'_>, events: &[String]) -> (Vec<CorrelationHit>, Stats) {
    let (mut out, _) = feed_all_keep(&mut corr, events);
    corr.flush(&mut out);
    (out, corr.stats)
}

fn run(set: &RuleSet, events: &[String]) -> Vec<CorrelationHit> {
    run_with(set, Options::default(), events).0
}

fn brute_force(threshold: u32) -> RuleSet {
    let corr = format!("title: brute force\nid: bf\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [userIdentity.userName]\n  timespan: 10m\n  condition: {{gte: {threshold}}}\nlevel: high\n");
    set(&[FAILED, &corr])
}

#[test]
fn event_count_fires_at_the_threshold_and_not_below() {
    let s = brute_force(6);
    let five: Vec<String> = (0..5)
        .map(|i| login(i * 60, "bob", "1.1.1.1", false))
        .collect();
    assert!(run(&s, &five).is_empty());
    let mut six = five.clone();
    six.push(login(300, "bob", "1.1.1.1", false));
    let hits = run(&s, &six);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].value, 6.0);
    assert_eq!(
        hits[0].group,
        vec![("userIdentity.userName".to_string(), Some("bob".to_string()))]
    );
    assert_eq!(hits[0].origin.input_index, 5);
    assert_eq!(hits[0].window_start, 1_704_067_200);
}

#[test]
fn windows_slide_on_event_time_with_inclusive_bounds() {
    let s = brute_force(3);
    // 0, 600, 1200: each pair is exactly the timespan apart; all three span 1200 s > 600 s.
    let spread: Vec<String> = [0, 600, 1200]
        .iter()
        .map(|&t| login(t, "bob", "1.1.1.1", false))
        .collect();
    assert!(run(&s, &spread).is_empty());
    let edge: Vec<String> = [0, 300, 600]
        .iter()
        .map(|&t| login(t, "bob", "1.1.1.1", false))
        .collect();
    assert_eq!(
        run(&s, &edge).len(),
        1,
        "an event exactly one timespan old still counts"
    );
    let groups: Vec<String> = [0, 1, 2]
        .iter()
        .map(|&t| login(t, &format!("u{t}"), "1.1.1.1", false))
        .collect();
    assert!(
        run(&s, &groups).is_empty(),
        "each user has a window of its own"
    );
}

#[test]
fn an_early_window_slides_without_reset() {
    let s = brute_force(2);
    let events: Vec<String> = (0..5).map(|i| login(i, "bob", "1.1.1.1", false)).collect();
    let values: Vec<f64> = run(&s, &events).iter().map(|h| h.value).collect();
    assert_eq!(
        values,
        vec![2.0, 3.0, 4.0, 5.0],
        "every event from the second meets it"
    );
}

#[test]
fn a_buffered_window_that_fires_starts_again() {
    let corr = "title: fts\nid: fts\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_login, successful_login]\n  group-by: [userIdentity.userName]\n  timespan: 10m\n";
    let s = set(&[FAILED, SUCCESS, corr]);
    assert!(!s.correlations()[0].early);
    let events = [
        login(0, "bob", "1.1.1.1", false),
        login(1, "bob", "1.1.1.1", true),
        login(2, "bob", "1.1.1.1", true),
        login(3, "bob", "1.1.1.1", false),
        login(4, "bob", "1.1.1.1", true),
    ];
    assert_eq!(
        run(&s, &events).len(),
        2,
        "0+1 fire, 2 has no failure before it, 3+4 fire"
    );
}

/// The eventIDs a hit names.
fn lineage_of(hit: &CorrelationHit) -> Vec<String> {
    hit.lineage.iter().map(|(_, id)| id.clone()).collect()
}

#[test]
fn hits_name_the_events_of_their_group_and_window() {
    // Early: bob's events interleaved with alice's; each hit names bob's window only.
    let s = brute_force(3);
    let mut events = Vec::new();
    for i in 0..4 {
        events.push(login(i * 60, "bob", "1.1.1.1", false));
        events.push(login(i * 60 + 1, "alice", "1.1.1.1", false));
    }
    let hits = run_with(&s, Options::default(), &events[..7]).0;
    let bob: Vec<_> = hits
        .iter()
        .filter(|h| h.group[0].1.as_deref() == Some("bob"))
        .collect();
    assert_eq!(bob.len(), 2);
    assert_eq!(
        lineage_of(bob[0]),
        ["bob-0-false", "bob-60-false", "bob-120-false"]
    );
    assert_eq!(bob[0].events, 3);
    assert_eq!(bob[1].events, 4);
    assert_eq!(lineage_of(bob[1]).len(), 4);
    // Buffered: a window that fired starts again, and so does its list.
    let corr = "title: fts\nid: fts\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_login, successful_login]\n  group-by: [userIdentity.userName]\n  timespan: 10m\n";
    let s = set(&[FAILED, SUCCESS, corr]);
    let events = [
        login(0, "bob", "1.1.1.1", false),
        login(1, "bob", "1.1.1.1", true),
        login(3, "bob", "1.1.1.1", false),
        login(4, "bob", "1.1.1.1", true),
    ];
    let hits = run(&s, &events);
    assert_eq!(lineage_of(&hits[0]), ["bob-0-false", "bob-1-true"]);
    assert_eq!(lineage_of(&hits[1]), ["bob-3-false", "bob-4-true"]);
}

#[test]
fn a_restored_state_of_another_shape_starts_over() {
    // A buffered count (the upper bound keeps it from firing early).
    let corr = "title: bounded\nid: bb\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [userIdentity.userName]\n  timespan: 10m\n  condition: {gte: 3, lte: 1000}\nlevel: high\n";
    let s = set(&[FAILED, corr]);
    let mut c = Correlator::new(&s, Options::default());
    feed_all_keep(&mut c, &[login(0, "bob", "1.1.1.1", false)]);
    c.flush(&mut Vec::new());
    let snap = String::from_utf8(c.snapshot()).unwrap();
    let body = snap.split_once('\n').unwrap().1;
    let times = r#"{"Times":[1704067200]}"#;
    assert!(body.contains(times), "{body}");
    // Found by a hostile probe: a group restored with a first-seen state never fired again.
    let body = body.replacen(times, r#"{"Known":1704067200}"#, 1);
    let sum = xxhash_rust::xxh3::xxh3_64(body.as_bytes());
    let forged = format!("TRAILWATCH-STATE 2 {sum:016x}\n{body}");
    let mut after = Correlator::new(&s, Options::default());
    after.restore(forged.as_bytes()).unwrap();
    let more: Vec<String> = (1..4)
        .map(|i| login(i * 60, "bob", "1.1.1.1", false))
        .collect();
    let (mut hits, _) = feed_all_keep(&mut after, &more);
    after.flush(&mut hits);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].value, 3.0);
}

#[test]
fn the_same_state_is_the_same_snapshot_in_any_process() {
    // Each correlator places its groups with its own secret, and the maps inside windows
    // (distinct values, early windows' counts, first-seen learning by account) have seeds of
    // their own: the snapshot must show none of them.
    let spray = |bound: &str| {
        format!("title: spray\nid: spray\ncorrelation:\n  type: value_count\n  rules: [failed_login]\n  group-by: [sourceIPAddress]\n  timespan: 1h\n  condition: {{field: userIdentity.userName, gte: 3{bound}}}\n")
    };
    let first_seen = "title: new user\nid: fs\ntrailwatch:\n  first_seen:\n    rules: [failed_login]\n    fields: [userIdentity.userName]\n    history: 2d\n    retention: 10d\n";
    let sets = [
        (brute_force(50), r#"{"EarlyCount":"#),
        (set(&[FAILED, &spray("")]), r#"{"Early":{"items":"#),
        (
            set(&[FAILED, &spray(", lte: 1000")]),
            r#"{"Values":{"order":"#,
        ),
        (set(&[FAILED, first_seen]), r#""started":[["#),
    ];
    let events: Vec<String> = (0..200)
        .map(|i| {
            let e = login(
                i * 10,
                &format!("u{}", i % 77),
                &format!("10.0.0.{}", i % 3),
                false,
            );
            e.replacen(
                '{',
                &format!(r#"{{"recipientAccountId":"{:012}","#, i % 11),
                1,
            )
        })
        .collect();
    for (s, holds) in &sets {
        let snapshot = |events: &mut dyn Iterator<Item = &String>| {
            let mut c = Correlator::new(s, Options::default());
            let events: Vec<String> = events.cloned().collect();
            feed_all_keep(&mut c, &events);
            assert!(c.keys() >= 1, "{holds}: no keys");
            c.snapshot()
        };
        let once = snapshot(&mut events.iter());
        assert_eq!(once, snapshot(&mut events.iter()));
        let text = String::from_utf8(once).unwrap();
        assert!(text.contains(holds), "{holds}: {text}");
    }
}

#[test]
fn a_restart_keeps_what_a_window_is_made_of() {
    let s = brute_force(3);
    let first: Vec<String> = (0..2).map(|i| login(i, "bob", "1.1.1.1", false)).collect();
    let (_, before) = {
        let mut c = Correlator::new(&s, Options::default());
        let (hits, _) = feed_all_keep(&mut c, &first);
        (hits, c.snapshot())
    };
    let mut after = Correlator::new(&s, Options::default());
    after.restore(&before).unwrap();
    let (hits, _) = feed_all_keep(&mut after, &[login(2, "bob", "1.1.1.1", false)]);
    assert_eq!(
        lineage_of(&hits[0]),
        ["bob-0-false", "bob-1-false", "bob-2-false"]
    );
}

/// Matches each event and feeds the hits to `corr` (not flushed).
fn feed_all_keep(corr: &mut Correlator<'_>, events: &[String]) -> (Vec<CorrelationHit>, Stats) {
    let set = corr.set;
    let mut decoder = Decoder::new(set.fields(), Limits::default());
    let mut scratch = MatchScratch::default();
    let mut hits = Vec::new();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        decoder
            .decode(e.as_bytes(), &mut |item| {
                let ev = item.unwrap();
                set.matches(ev, &mut scratch, &mut hits);
                for &r in &hits {
                    let origin = Origin {
                        input_index: i as u64,
                        event_id: ev.get(set.event_id).text().map(str::to_string),
                        event_time: None,
                    };
                    corr.push(ev, r, origin, &mut out);
                }
            })
            .unwrap();
    }
    (out, corr.stats)
}

#[test]
fn value_count_detects_a_password_spray() {
    let corr = "title: spray\nid: spray\ncorrelation:\n  type: value_count\n  rules: [failed_login]\n  group-by: [sourceIPAddress]\n  timespan: 1h\n  condition: {field: userIdentity.userName, gte: 5}\n";
    let s = set(&[FAILED, corr]);
    let mut events: Vec<String> = (0..4)
        .map(|i| login(i * 10, &format!("user{i}"), "6.6.6.6", false))
        .collect();
    events.push(login(50, "user0", "6.6.6.6", false)); // a repeat is not a new user
    assert!(run(&s, &events).is_empty());
    events.push(login(60, "user4", "6.6.6.6", false));
    let hits = run(&s, &events);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].value, 5.0);
    assert_eq!(hits[0].group[0].1.as_deref(), Some("6.6.6.6"));
}

#[test]
fn temporal_ordered_needs_the_order_and_the_timespan() {
    let corr = "title: failed then success\nid: fts\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_login, successful_login]\n  group-by: [userIdentity.userName]\n  timespan: 15m\n";
    let s = set(&[FAILED, SUCCESS, corr]);
    let ordered = vec![
        login(0, "bob", "1.1.1.1", false),
        login(600, "bob", "1.1.1.1", true),
    ];
    assert_eq!(run(&s, &ordered).len(), 1);
    let reversed = vec![
        login(0, "bob", "1.1.1.1", true),
        login(600, "bob", "1.1.1.1", false),
    ];
    assert!(run(&s, &reversed).is_empty());
    let too_slow = vec![
        login(0, "bob", "1.1.1.1", false),
        login(901, "bob", "1.1.1.1", true),
    ];
    assert!(run(&s, &too_slow).is_empty());
    let other_user = vec![
        login(0, "bob", "1.1.1.1", false),
        login(60, "eve", "1.1.1.1", true),
    ];
    assert!(run(&s, &other_user).is_empty());
}

#[test]
fn temporal_accepts_any_order() {
    let corr = "title: both\nid: both\ncorrelation:\n  type: temporal\n  rules: [failed_login, successful_login]\n  group-by: [userIdentity.userName]\n  timespan: 15m\n";
    let s = set(&[FAILED, SUCCESS, corr]);
    let reversed = vec![
        login(0, "bob", "1.1.1.1", true),
        login(600, "bob", "1.1.1.1", false),
    ];
    assert_eq!(run(&s, &reversed).len(), 1);
}

#[test]
fn correlations_of_correlations_follow_the_spec_example() {
    let many = "title: many failed\nid: many\nname: multiple_failed_login\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [userIdentity.userName]\n  timespan: 10m\n  condition: {gte: 3}\n";
    let top = "title: brute force success\nid: top\ncorrelation:\n  type: temporal_ordered\n  rules: [multiple_failed_login, successful_login]\n  group-by: [userIdentity.userName]\n  timespan: 10m\nlevel: high\n";
    let s = set(&[FAILED, SUCCESS, many, top]);
    let links = s.links();
    assert_eq!(
        links.rule_reported,
        vec![false, false],
        "referenced rules do not alert by default"
    );
    assert_eq!(links.corr_reported, vec![false, true]);
    let mut events: Vec<String> = (0..3)
        .map(|i| login(i * 30, "bob", "1.1.1.1", false))
        .collect();
    events.push(login(200, "bob", "1.1.1.1", true));
    let hits = run(&s, &events);
    let ids: Vec<&str> = hits
        .iter()
        .map(|h| s.correlations()[h.correlation as usize].id())
        .collect();
    assert_eq!(ids, vec!["many", "top"]);
    // Two failures only: neither fires.
    assert!(run(
        &s,
        &[events[0].clone(), events[1].clone(), events[3].clone()]
    )
    .is_empty());
}

#[test]
fn value_sum_avg_and_percentile() {
    let base = "title: api\nid: api\nname: api\nlogsource: {product: aws}\ndetection:\n  sel: {eventName: GetObject}\n  condition: sel\n";
    let ev = |t: i64, bytes: u32, agent: &str| {
        format!(
            r#"{{"eventID":"e{t}","eventTime":"{}","eventName":"GetObject","sourceIPAddress":"9.9.9.9","bytes":{bytes},"userAgent":"{agent}"}}"#,
            format_time(1_704_067_200 + t)
        )
    };
    let sum = "title: sum\nid: sum\ncorrelation:\n  type: value_sum\n  rules: [api]\n  group-by: [sourceIPAddress]\n  timespan: 1h\n  condition: {field: bytes, gt: 1000}\n";
    let s = set(&[base, sum]);
    assert!(run(&s, &[ev(0, 500, "a"), ev(1, 500, "a")]).is_empty());
    assert_eq!(
        run(&s, &[ev(0, 500, "a"), ev(1, 501, "a")])[0].value,
        1001.0
    );
    let avg = "title: avg\nid: avg\ncorrelation:\n  type: value_avg\n  rules: [api]\n  group-by: [sourceIPAddress]\n  timespan: 1h\n  condition: {field: bytes, gte: 300, lt: 400}\n";
    let s = set(&[base, avg]);
    assert_eq!(run(&s, &[ev(0, 500, "a"), ev(1, 100, "a")])[0].value, 300.0);
    let pct = "title: rare agent\nid: pct\ncorrelation:\n  type: value_percentile\n  rules: [api]\n  group-by: [sourceIPAddress]\n  timespan: 1h\n  condition: {field: userAgent, lte: 10}\n";
    let s = set(&[base, pct]);
    let mut events: Vec<String> = (0..10).map(|t| ev(t, 1, "common")).collect();
    events.push(ev(20, 1, "rare"));
    let hits = run(&s, &events);
    assert!(
        !hits.is_empty(),
        "a value seen in under 10% of the group's events fires"
    );
    assert_eq!(hits.last().unwrap().origin.input_index, 10);
}

#[test]
fn late_events_are_counted_not_correlated() {
    let s = brute_force(2);
    let events = vec![
        login(1000, "bob", "1.1.1.1", false),
        login(1000 - 301, "bob", "1.1.1.1", false),
    ];
    let (hits, stats) = run_with(&s, Options::default(), &events);
    assert!(hits.is_empty());
    assert_eq!(stats.late, 1);
    let in_time = vec![
        login(1000, "bob", "1.1.1.1", false),
        login(1000 - 300, "bob", "1.1.1.1", false),
    ];
    assert_eq!(
        run(&s, &in_time).len(),
        1,
        "exactly the lateness is still in time"
    );
}

#[test]
fn key_cap_evicts_the_oldest_and_counts() {
    let s = brute_force(2);
    let events: Vec<String> = (0..10)
        .map(|i| login(i, &format!("u{i}"), "1.1.1.1", false))
        .collect();
    let opts = Options {
        max_keys: 4,
        ..Options::default()
    };
    let (_, stats) = run_with(&s, opts, &events);
    assert_eq!(stats.evicted, 6);
    // The evicted user's first failure is forgotten: a second one does not fire...
    let mut again = events.clone();
    again.push(login(20, "u0", "1.1.1.1", false));
    let (hits, _) = run_with(&s, opts, &again);
    assert!(hits.is_empty());
    // ...while a recent user's does.
    let mut recent = events;
    recent.push(login(20, "u9", "1.1.1.1", false));
    assert_eq!(run_with(&s, opts, &recent).0.len(), 1);
}

#[test]
fn events_without_a_time_are_counted() {
    let s = brute_force(2);
    let events =
        vec![r#"{"eventName":"ConsoleLogin","errorMessage":"Failed authentication"}"#.to_string()];
    assert_eq!(run_with(&s, Options::default(), &events).1.no_time, 1);
}

#[test]
fn time_parsing() {
    assert_eq!(event_time("2024-01-01T00:00:00Z"), Some(1_704_067_200));
    assert_eq!(event_time("2024-01-01 00:00:05"), Some(1_704_067_205));
    assert_eq!(event_time("2024-01-01T02:00:00+02:00"), Some(1_704_067_200));
    assert_eq!(event_time("yesterday"), None);
    assert_eq!(format_time(1_704_067_200), "2024-01-01T00:00:00Z");
}

#[test]
fn reference_errors_and_cycles_are_rule_errors() {
    let bad = "title: x\nid: x\ncorrelation:\n  type: event_count\n  rules: [nope]\n  timespan: 1m\n  condition: {gte: 1}\n";
    let (rules, _) = parse_file(Path::new("c.yml"), bad, &Placeholders::new());
    let errs = RuleSet::compile(rules).unwrap_err();
    assert!(
        errs[0].message.contains("'nope', which is no loaded rule"),
        "{errs:?}"
    );
    let a = "title: a\nid: a\ncorrelation:\n  type: event_count\n  rules: [b]\n  timespan: 1m\n  condition: {gte: 1}\n";
    let b = "title: b\nid: b\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 1m\n  condition: {gte: 1}\n";
    let (rules, _) = parse_file(
        Path::new("c.yml"),
        &format!("{a}---\n{b}"),
        &Placeholders::new(),
    );
    let errs = RuleSet::compile(rules).unwrap_err();
    assert!(errs[0].message.contains("cycle"), "{errs:?}");
}

proptest::proptest! {
    /// Replaying the same events in any order within the lateness gives the same hits.
    #[test]
    fn shuffled_within_lateness_gives_the_same_hits(seed in proptest::num::u64::ANY, n in 5usize..60) {
        use rand_like::Shuffle;
        let corr = "title: bf\nid: bf\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [userIdentity.userName]\n  timespan: 2m\n  condition: {gte: 3}\n---\ntitle: spray\nid: spray\ncorrelation:\n  type: value_count\n  rules: [failed_login]\n  group-by: [sourceIPAddress]\n  timespan: 5m\n  condition: {field: userIdentity.userName, gte: 3}\n---\ntitle: fts\nid: fts\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_login, successful_login]\n  group-by: [userIdentity.userName]\n  timespan: 3m\n";
        let s = set(&[FAILED, SUCCESS, corr]);
        let mut rng = seed;
        let events: Vec<(i64, String)> = (0..n)
            .map(|i| {
                let t = i as i64 * 20 + (rng.next() % 20) as i64;
                let user = format!("u{}", rng.next() % 4);
                let ip = format!("10.0.0.{}", rng.next() % 3);
                (t, login(t, &user, &ip, rng.next() % 4 == 0))
            })
            .collect();
        let in_order: Vec<String> = events.iter().map(|e| e.1.clone()).collect();
        // Displace events by less than the lateness: shuffle inside blocks of 240 s.
        let mut shuffled = events.clone();
        shuffled.sort_by_key(|(t, _)| t / 240);
        for block in shuffled.chunk_by_mut(|a, b| a.0 / 240 == b.0 / 240) {
            block.shuffle_with(&mut rng);
        }
        let shuffled: Vec<String> = shuffled.into_iter().map(|e| e.1).collect();
        // An early correlation's hit names the event whose arrival completed it.
        let key = |h: &CorrelationHit| {
            let early = s.correlations()[h.correlation as usize].early;
            let origin = if early { None } else { h.origin.event_id.clone() };
            let value = (!early).then_some(h.value as u64);
            (h.correlation, h.time, h.group.clone(), value, origin)
        };
        let mut a: Vec<_> = run(&s, &in_order).iter().map(key).collect();
        let mut b: Vec<_> = run(&s, &shuffled).iter().map(key).collect();
        a.sort();
        b.sort();
        proptest::prop_assert_eq!(a, b);
    }
}

/// A tiny deterministic generator for the property test (xorshift), so no RNG crate is needed.
mod rand_like {
    pub trait Shuffle {
        fn shuffle_with(&mut self, rng: &mut u64);
    }
    pub trait Next {
        fn next(&mut self) -> u64;
    }
    impl Next for u64 {
        fn next(&mut self) -> u64 {
            *self ^= *self << 13;
            *self ^= *self >> 7;
            *self ^= *self << 17;
            *self
        }
    }
    impl<T> Shuffle for [T] {
        fn shuffle_with(&mut self, rng: &mut u64) {
            for i in (1..self.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                self.swap(i, j);
            }
        }
    }
}
use rand_like::Next;

#[test]
fn the_shuffle_property_sees_real_hits() {
    use rand_like::Shuffle;
    let s = brute_force(3);
    let mut total = 0;
    for seed in 1..20u64 {
        let mut rng = seed;
        let events: Vec<String> = (0..40)
            .map(|i| login(i * 15, &format!("u{}", rng.next() % 3), "1.1.1.1", false))
            .collect();
        let mut shuffled = events.clone();
        for block in shuffled.chunks_mut(8) {
            block.shuffle_with(&mut rng);
        }
        let key = |h: &CorrelationHit| (h.time, h.group.clone());
        let mut a: Vec<_> = run(&s, &events).iter().map(key).collect();
        let mut b: Vec<_> = run(&s, &shuffled).iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "seed {seed}");
        total += a.len();
    }
    assert!(total > 50, "{total}");
}

mod snapshots {
    use super::*;

    fn feed(set: &RuleSet, corr: &mut Correlator<'_>, events: &[String]) -> Vec<CorrelationHit> {
        let mut decoder = Decoder::new(set.fields(), Limits::default());
        let mut scratch = MatchScratch::default();
        let mut hits = Vec::new();
        let mut out = Vec::new();
        for e in events {
            decoder
                .decode(e.as_bytes(), &mut |item| {
                    let ev = item.unwrap();
                    set.matches(ev, &mut scratch, &mut hits);
                    for &r in &hits {
                        corr.push(
                            ev,
                            r,
                            Origin {
                                input_index: 0,
                                event_id: None,
                                event_time: None,
                            },
                            &mut out,
                        );
                    }
                })
                .unwrap();
        }
        out
    }

    #[test]
    fn a_restart_remembers_a_brute_force_in_progress() {
        let s = brute_force(6);
        let first: Vec<String> = (0..3)
            .map(|i| login(i * 60, "bob", "1.1.1.1", false))
            .collect();
        let rest: Vec<String> = (3..6)
            .map(|i| login(i * 60, "bob", "1.1.1.1", false))
            .collect();
        let mut before = Correlator::new(&s, Options::default());
        assert!(feed(&s, &mut before, &first).is_empty());
        let bytes = before.snapshot();

        let mut restored = Correlator::new(&s, Options::default());
        let report = restored.restore(&bytes).unwrap();
        assert_eq!(
            (report.groups, report.pending),
            (1, 0),
            "an early window holds its events; nothing waits in the buffer"
        );
        let hits = feed(&s, &mut restored, &rest);
        assert_eq!(hits.len(), 1, "fires on the sixth event, without a flush");

        let mut forgetful = Correlator::new(&s, Options::default());
        let mut hits = feed(&s, &mut forgetful, &rest);
        forgetful.flush(&mut hits);
        assert!(
            hits.is_empty(),
            "without the snapshot the first three failures are lost"
        );
    }

    #[test]
    fn window_state_itself_is_restored() {
        let s = brute_force(6);
        let first: Vec<String> = (0..3)
            .map(|i| login(i * 60, "bob", "1.1.1.1", false))
            .collect();
        let mut before = Correlator::new(
            &s,
            Options {
                lateness: 0,
                ..Options::default()
            },
        );
        feed(&s, &mut before, &first);
        before.flush(&mut Vec::new());
        assert_eq!(before.keys(), 1);
        let mut after = Correlator::new(
            &s,
            Options {
                lateness: 0,
                ..Options::default()
            },
        );
        let report = after.restore(&before.snapshot()).unwrap();
        assert_eq!((report.groups, report.pending), (1, 0));
        let rest: Vec<String> = (3..6)
            .map(|i| login(i * 60, "bob", "1.1.1.1", false))
            .collect();
        let mut hits = feed(&s, &mut after, &rest);
        after.flush(&mut hits);
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn corrupt_or_foreign_snapshots_are_rejected_whole() {
        let s = brute_force(6);
        let mut c = Correlator::new(&s, Options::default());
        feed(&s, &mut c, &[login(0, "bob", "1.1.1.1", false)]);
        let good = c.snapshot();
        let mut target = Correlator::new(&s, Options::default());
        let mut flipped = good.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x20;
        assert_eq!(target.restore(&flipped), Err(SnapshotError::Checksum));
        assert_eq!(
            target.restore(&good[..good.len() - 10]),
            Err(SnapshotError::Checksum)
        );
        assert_eq!(
            target.restore(b"{\"not\": \"a snapshot\"}"),
            Err(SnapshotError::NotASnapshot)
        );
        assert_eq!(target.restore(b""), Err(SnapshotError::NotASnapshot));
        let old = String::from_utf8_lossy(&good).replacen(
            "TRAILWATCH-STATE 2 ",
            "TRAILWATCH-STATE 0 ",
            1,
        );
        assert!(matches!(
            target.restore(old.as_bytes()),
            Err(SnapshotError::Version { .. })
        ));
        // Version 1 (full 128-bit keys) is still read: groups are found by their first word.
        let v1 = String::from_utf8_lossy(&good).replacen(
            "TRAILWATCH-STATE 2 ",
            "TRAILWATCH-STATE 1 ",
            1,
        );
        assert!(target.restore(v1.as_bytes()).is_ok());
        assert_eq!(target.pending(), 0, "a rejected snapshot changes nothing");
        assert!(target.restore(&good).is_ok());
    }

    #[test]
    fn changed_correlations_drop_their_state_only() {
        let old = brute_force(6);
        let mut c = Correlator::new(
            &old,
            Options {
                lateness: 0,
                ..Options::default()
            },
        );
        feed(
            &old,
            &mut c,
            &[
                login(0, "bob", "1.1.1.1", false),
                login(1, "bob", "1.1.1.1", false),
            ],
        );
        c.flush(&mut Vec::new());
        let new = brute_force(7);
        let mut after = Correlator::new(&new, Options::default());
        let report = after.restore(&c.snapshot()).unwrap();
        assert_eq!(report.dropped, vec!["bf".to_string()]);
        assert_eq!(after.keys(), 0);
    }
}

/// Addresses placed for the geo and first-seen tests.
mod geo_detectors_support {
    use crate::geo::{Location, MapLocator};
    use std::sync::Arc;

    pub fn locator() -> Arc<MapLocator> {
        let mut m = MapLocator::default();
        let mut put = |ip: &str, c: &str, lat: f64, lon: f64, asn: Option<u32>| {
            m.0.insert(
                ip.parse().unwrap(),
                Location {
                    country: c.into(),
                    lat,
                    lon,
                    asn,
                },
            );
        };
        put("198.51.100.1", "US", 39.96, -83.0, None); // Columbus, Ohio
        put("198.51.100.2", "US", 41.50, -81.69, None); // Cleveland, 200 km away
        put("203.0.113.1", "DE", 50.11, 8.68, Some(3320)); // Frankfurt
        put("192.0.2.1", "FR", 48.86, 2.35, None); // Paris
        Arc::new(m)
    }
}

mod geo_detectors {
    use super::geo_detectors_support::locator;
    use super::*;

    const SUCCESS_ANY: &str = "title: login\nid: ok\nname: console_login_success\nlogsource: {product: aws}\ndetection:\n  sel: {eventName: ConsoleLogin, responseElements.ConsoleLogin: Success}\n  condition: sel\n";

    fn run_geo(rule: &str, events: &[String]) -> (Vec<CorrelationHit>, Stats) {
        let s = set(&[SUCCESS_ANY, rule]);
        feed_all(
            Correlator::new(&s, Options::default()).with_locator(locator()),
            events,
        )
    }

    fn signin(t: i64, arn: &str, ip: &str) -> String {
        format!(
            r#"{{"eventID":"{arn}{t}","eventTime":"{}","eventName":"ConsoleLogin","userIdentity":{{"arn":"{arn}"}},"sourceIPAddress":"{ip}","responseElements":{{"ConsoleLogin":"Success"}}}}"#,
            format_time(1_704_067_200 + t)
        )
    }

    const TRAVEL: &str = "title: travel\nid: travel\ntrailwatch:\n  geo:\n    detector: impossible_travel\n    rules: [console_login_success]\n    max_speed_kmh: 900\n";

    #[test]
    fn impossible_travel_just_above_and_below_the_speed() {
        // Columbus to Frankfurt is about 6,760 km: at 900 km/h that takes about 7.5 hours.
        let km = crate::geo::distance_km(39.96, -83.0, 50.11, 8.68);
        let boundary = (km / 900.0 * 3600.0) as i64;
        let too_fast = [
            signin(0, "alice", "198.51.100.1"),
            signin(boundary - 60, "alice", "203.0.113.1"),
        ];
        let (hits, _) = run_geo(TRAVEL, &too_fast);
        assert_eq!(hits.len(), 1);
        assert!(
            hits[0].value > 900.0 && hits[0].value < 920.0,
            "{}",
            hits[0].value
        );
        assert!(
            hits[0].detail.as_deref().unwrap().starts_with("US to DE: "),
            "{:?}",
            hits[0].detail
        );
        let possible = [
            signin(0, "alice", "198.51.100.1"),
            signin(boundary + 60, "alice", "203.0.113.1"),
        ];
        assert!(run_geo(TRAVEL, &possible).0.is_empty());
        let two_people = [
            signin(0, "alice", "198.51.100.1"),
            signin(600, "bob", "203.0.113.1"),
        ];
        assert!(run_geo(TRAVEL, &two_people).0.is_empty());
        // Columbus to Cleveland (200 km) in a minute is too fast, unless hops that short are
        // below the rule's distance floor (geolocation is approximate at city scale).
        let short_hop = [
            signin(0, "alice", "198.51.100.1"),
            signin(60, "alice", "198.51.100.2"),
        ];
        assert_eq!(run_geo(TRAVEL, &short_hop).0.len(), 1);
        let floor = format!("{TRAVEL}    min_distance_km: 300\n");
        assert!(run_geo(&floor, &short_hop).0.is_empty());
    }

    #[test]
    fn service_and_private_addresses_are_never_placed() {
        let events = [
            signin(0, "alice", "198.51.100.1"),
            signin(60, "alice", "AWS Internal"),
            signin(120, "alice", "10.0.0.5"),
            signin(180, "alice", "ec2.amazonaws.com"),
            signin(240, "alice", "8.8.8.8"),
        ];
        let (hits, stats) = run_geo(TRAVEL, &events);
        assert!(hits.is_empty());
        assert_eq!(
            stats.unlocated, 1,
            "only the public address missing from the database counts"
        );
    }

    #[test]
    fn exceptions_by_network_as_and_country() {
        let fast = [
            signin(0, "alice", "198.51.100.1"),
            signin(600, "alice", "203.0.113.1"),
        ];
        assert_eq!(run_geo(TRAVEL, &fast).0.len(), 1);
        for ex in ["cidrs: [203.0.113.0/24]", "asns: [3320]", "countries: [DE]"] {
            let rule = format!("{TRAVEL}    exceptions: {{{ex}}}\n");
            assert!(run_geo(&rule, &fast).0.is_empty(), "{ex}");
        }
    }

    #[test]
    fn new_country_after_a_baseline() {
        let rule = "title: new country\nid: nc\ntrailwatch:\n  geo:\n    detector: new_country\n    rules: [console_login_success]\n    baseline: 1d\n    min_history: 2\n";
        let day = 86_400;
        let events = [
            signin(0, "alice", "198.51.100.1"),
            signin(3600, "alice", "192.0.2.1"), // new, but still learning
            signin(day + 10, "alice", "198.51.100.2"),
            signin(day + 20, "alice", "203.0.113.1"), // new after the baseline: fires
            signin(day + 30, "alice", "203.0.113.1"), // known now
        ];
        let (hits, _) = run_geo(rule, &events);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].origin.input_index, 3);
        assert_eq!(
            hits[0].detail.as_deref(),
            Some("first event from DE; seen before: US, FR")
        );
        assert_eq!(
            hits[0].group,
            vec![("userIdentity.arn".to_string(), Some("alice".to_string()))]
        );
    }

    #[test]
    fn geo_rules_parse_errors() {
        let bad = "title: x\nid: x\ntrailwatch:\n  geo:\n    detector: teleport\n    rules: [a]\n";
        let (_, errs) = parse_file(Path::new("g.yml"), bad, &Placeholders::new());
        assert!(
            errs[0]
                .message
                .contains("'teleport' is not new_country or impossible_travel"),
            "{errs:?}"
        );
        let bad = "title: x\nid: x\ntrailwatch:\n  geo:\n    detector: new_country\n    rules: [a]\n    exceptions: {cidrs: [nope]}\n";
        let (_, errs) = parse_file(Path::new("g.yml"), bad, &Placeholders::new());
        assert!(
            errs[0].message.contains("'nope' is not a network"),
            "{errs:?}"
        );
    }
}

mod first_seen {
    use super::geo_detectors_support::*;
    use super::*;

    const API: &str = "title: api\nid: api\nname: any_call\nlogsource: {product: aws}\ndetection:\n  sel: {eventName|exists: true}\n  condition: sel\n";
    const DAY: i64 = 86_400;

    fn rule(extra: &str) -> String {
        format!("title: new api\nid: fs\ntrailwatch:\n  first_seen:\n    rules: [any_call]\n    fields: [userIdentity.arn, eventName]\n    history: 2d\n    retention: 10d\n{extra}")
    }

    fn call(t: i64, arn: &str, name: &str, ip: &str) -> String {
        format!(
            r#"{{"eventID":"{arn}-{name}-{t}","eventTime":"{}","eventName":"{name}","userIdentity":{{"arn":"{arn}"}},"sourceIPAddress":"{ip}"}}"#,
            format_time(1_704_067_200 + t)
        )
    }

    fn fired(rule: &str, events: &[String]) -> Vec<(String, i64)> {
        let s = set(&[API, rule]);
        let c = Correlator::new(&s, Options::default()).with_locator(locator());
        feed_all(c, events)
            .0
            .iter()
            .map(|h| {
                let values: Vec<String> = h
                    .group
                    .iter()
                    .map(|(_, v)| v.clone().unwrap_or_default())
                    .collect();
                (values.join("/"), (h.time - 1_704_067_200) / DAY)
            })
            .collect()
    }

    #[test]
    fn new_combinations_alert_once_after_the_learning_period() {
        let events = [
            call(0, "alice", "ListBuckets", "10.0.0.1"),
            call(DAY, "alice", "GetObject", "10.0.0.1"), // learning: no alert
            call(3 * DAY, "alice", "GetObject", "10.0.0.1"), // known
            call(3 * DAY + 1, "alice", "DeleteBucket", "10.0.0.1"), // new
            call(4 * DAY, "alice", "DeleteBucket", "10.0.0.1"), // known now
            call(4 * DAY + 1, "bob", "ListBuckets", "10.0.0.1"), // new principal
            // Unseen for longer than the retention: forgotten, so new again.
            call(20 * DAY, "alice", "GetObject", "10.0.0.1"),
        ];
        assert_eq!(
            fired(&rule(""), &events),
            [
                ("alice/DeleteBucket".to_string(), 3),
                ("bob/ListBuckets".to_string(), 4),
                ("alice/GetObject".to_string(), 20),
            ]
        );
        let exempt = rule("    exceptions: {userIdentity.arn: [bob]}\n");
        assert_eq!(fired(&exempt, &events).len(), 2, "bob never alerts");
    }

    #[test]
    fn each_account_is_learnt_from_its_own_first_event() {
        let in_account = |t: i64, arn: &str, account: &str| {
            call(t, arn, "ListBuckets", "10.0.0.1").replacen(
                '{',
                &format!(r#"{{"recipientAccountId":"{account}","#),
                1,
            )
        };
        let events = [
            in_account(0, "alice", "111111111111"),
            // Twenty days on, a second account appears: it is learnt, not alerted on...
            in_account(20 * DAY, "bob", "222222222222"),
            // ...while a new principal of the first account alerts.
            in_account(20 * DAY + 1, "carol", "111111111111"),
        ];
        assert_eq!(
            fired(&rule(""), &events),
            [("carol/ListBuckets".to_string(), 20)]
        );
    }

    #[test]
    fn a_combination_can_include_where_the_address_is() {
        let by_country = rule("    location: country\n");
        let events = [
            call(0, "alice", "GetObject", "198.51.100.1"),
            call(3 * DAY, "alice", "GetObject", "198.51.100.2"), // US again
            call(3 * DAY + 1, "alice", "GetObject", "203.0.113.1"), // DE: new
            call(3 * DAY + 2, "alice", "GetObject", "10.0.0.1"), // private: never placed
        ];
        assert_eq!(
            fired(&by_country, &events),
            [("alice/GetObject/DE".to_string(), 3)]
        );
    }

    #[test]
    fn a_restart_keeps_what_was_learnt_and_when_learning_began() {
        let s = set(&[API, &rule("")]);
        let mut before = Correlator::new(&s, Options::default());
        let (mut out, _) =
            feed_all_keep(&mut before, &[call(0, "alice", "ListBuckets", "10.0.0.1")]);
        before.flush(&mut out);
        assert!(out.is_empty());
        let mut after = Correlator::new(&s, Options::default());
        after.restore(&before.snapshot()).unwrap();
        let (mut out, _) = feed_all_keep(
            &mut after,
            &[
                call(3 * DAY, "alice", "ListBuckets", "10.0.0.1"),
                call(3 * DAY, "alice", "PutObject", "10.0.0.1"),
            ],
        );
        after.flush(&mut out);
        let groups: Vec<String> = out.iter().map(|h| h.group_json().to_string()).collect();
        assert_eq!(
            groups,
            [r#"{"userIdentity.arn":"alice","eventName":"PutObject"}"#],
            "the learning period counts from before the restart; ListBuckets is known"
        );
    }

    proptest::proptest! {
        /// Known combinations are applied on arrival, the rest through the reorder buffer: the
        /// same hits whatever the order within the lateness, across learning and retention.
        #[test]
        fn arrival_order_within_the_lateness_changes_no_hit(
            picks in proptest::collection::vec((0u8..4, 0u8..2, 0i64..200, 0i64..290), 1..60),
        ) {
            let rule = "title: new api\nid: fs\ntrailwatch:\n  first_seen:\n    rules: [any_call]\n    fields: [userIdentity.arn, eventName]\n    history: 10h\n    retention: 20h\n";
            let users = ["alice", "bob", "carol", "dave"];
            let names = ["ListBuckets", "GetObject"];
            let timed: Vec<(i64, i64, String)> = picks
                .iter()
                .enumerate()
                .map(|(i, &(u, n, jitter, delay))| {
                    let t = i as i64 * 3000 + jitter;
                    (t, t + delay, call(t, users[u as usize], names[n as usize], "10.0.0.1"))
                })
                .collect();
            let in_order: Vec<String> = timed.iter().map(|x| x.2.clone()).collect();
            let mut arrival = timed.clone();
            arrival.sort_by_key(|x| x.1); // each delayed by under the 5-minute lateness
            let shuffled: Vec<String> = arrival.into_iter().map(|x| x.2).collect();
            // The model: in event-time order, a combination is new when unseen for 20 h, and
            // alerts once 10 h have passed since the first event.
            let mut model = Vec::new();
            let mut last: std::collections::HashMap<(u8, u8), i64> = Default::default();
            for (&(u, n, _, _), (t, _, _)) in picks.iter().zip(&timed) {
                let new = last.get(&(u, n)).is_none_or(|&l| l < t - 20 * 3600);
                if new && *t >= timed[0].0 + 10 * 3600 {
                    let group = format!("{}/{}", users[u as usize], names[n as usize]);
                    model.push((group, t / DAY));
                }
                last.insert((u, n), *t);
            }
            let mut a = fired(rule, &in_order);
            let mut b = fired(rule, &shuffled);
            a.sort();
            b.sort();
            model.sort();
            proptest::prop_assert_eq!(&a, &model);
            proptest::prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn rule_errors_name_the_key() {
        for (extra, says) in [
            ("    location: city\n", "location 'city'"),
            (
                "    address: ip\n",
                "'address' is read only with 'location'",
            ),
            (
                "    exceptions: {eventSource: [x]}\n",
                "exception field 'eventSource'",
            ),
            ("    colour: red\n", "unknown first_seen key 'colour'"),
            ("", "'history' must be a duration"),
        ] {
            let text = match extra {
                "" => rule("").replace("history: 2d", "history: soon"),
                _ => rule(extra),
            };
            let (_, errs) = parse_file(Path::new("f.yml"), &text, &Placeholders::new());
            assert!(
                errs.iter().any(|e| e.to_string().contains(says)),
                "{extra}: {errs:?}"
            );
        }
    }
}
