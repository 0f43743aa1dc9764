//! The Sigma correlation examples of the specification (../shared/corpus/sigma-correlation-examples)
//! load unchanged and behave as the specification says.

use std::path::Path;
use trailwatch::engine::{MatchScratch, RuleSet};
use trailwatch::event::{Decoder, Limits};
use trailwatch::rule::{parse_file, Placeholders};
use trailwatch::window::{format_time, CorrelationHit, Correlator, Options, Origin};
use trailwatch_e2e::corpus;

/// The example correlation plus one detection rule per reference: rule `r` matches events whose
/// field `rule` equals `r` (referenced by id when the reference looks like a UUID, else by name).
fn example(file: &str) -> RuleSet {
    let text =
        std::fs::read_to_string(corpus().join("sigma-correlation-examples").join(file)).unwrap();
    let doc: Vec<&str> = text.lines().collect();
    let refs: Vec<String> = doc
        .iter()
        .skip_while(|l| !l.trim_start().starts_with("rules:"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim_start().trim_start_matches("- ").trim().to_string())
        .collect();
    assert!(!refs.is_empty(), "{file}");
    let mut all = text.clone();
    for r in &refs {
        let key = if r.contains('-') { "id" } else { "name" };
        all.push_str(&format!(
            "\n---\ntitle: base {r}\n{key}: {r}\nlogsource: {{product: test}}\ndetection:\n  sel: {{rule: {r}}}\n  condition: sel\n"
        ));
    }
    let (rules, errors) = parse_file(Path::new(file), &all, &Placeholders::new());
    assert!(errors.is_empty(), "{file}: {errors:?}");
    RuleSet::compile(rules).unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

/// Runs events given as (seconds, rule reference, extra JSON members).
fn fire(set: &RuleSet, events: &[(i64, &str, String)]) -> Vec<CorrelationHit> {
    let mut decoder = Decoder::new(set.fields(), Limits::default());
    let mut corr = Correlator::new(set, Options::default());
    let mut scratch = MatchScratch::default();
    let mut hits = Vec::new();
    let mut out = Vec::new();
    for (i, (t, rule, extra)) in events.iter().enumerate() {
        let text = format!(
            r#"{{"eventID":"e{i}","eventTime":"{}","rule":"{rule}"{extra}}}"#,
            format_time(1_704_067_200 + t)
        );
        decoder
            .decode(text.as_bytes(), &mut |item| {
                let ev = item.unwrap();
                set.matches(ev, &mut scratch, &mut hits);
                for &r in &hits {
                    corr.push(
                        ev,
                        r,
                        Origin {
                            input_index: i as u64,
                            event_id: None,
                            event_time: None,
                        },
                        &mut out,
                    );
                }
            })
            .unwrap();
    }
    corr.flush(&mut out);
    out
}

const ID: &str = "5638f7c0-ac70-491d-8465-2a65075e0d86";

#[test]
fn every_example_loads() {
    let files: Vec<String> = std::fs::read_dir(corpus().join("sigma-correlation-examples"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    assert_eq!(files.len(), 8);
    for f in files {
        let set = example(&f);
        assert_eq!(set.correlations().len(), 1, "{f}");
    }
}

#[test]
fn event_count_counts_per_group_in_the_timespan() {
    let set = example("event_count.yml");
    let host = |h: &str| format!(r#","ComputerName":"{h}""#);
    let mut events: Vec<(i64, &str, String)> = (0..99).map(|i| (i * 30, ID, host("a"))).collect();
    events.push((100, ID, host("b")));
    assert!(
        fire(&set, &events).is_empty(),
        "99 on one host, 1 on another"
    );
    events.push((3000, ID, host("a")));
    let hits = fire(&set, &events);
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].group,
        vec![("ComputerName".to_string(), Some("a".to_string()))]
    );
    let spread: Vec<(i64, &str, String)> = (0..100).map(|i| (i * 40, ID, host("a"))).collect();
    assert!(
        fire(&set, &spread).is_empty(),
        "100 events over 66 minutes are not 100 in an hour"
    );
}

#[test]
fn value_count_counts_distinct_values() {
    let set = example("value_count.yml");
    let ev = |u: i64| format!(r#","ComputerName":"dc","WorkstationName":"ws","User":"user{u}""#);
    let events: Vec<(i64, &str, String)> = (0..150).map(|i| (i * 60, ID, ev(i % 99))).collect();
    assert!(fire(&set, &events).is_empty(), "99 distinct users");
    let events: Vec<(i64, &str, String)> = (0..100).map(|i| (i * 60, ID, ev(i))).collect();
    assert_eq!(fire(&set, &events).len(), 1);
}

#[test]
fn temporal_and_temporal_ordered() {
    let who = r#","ComputerName":"pc","User":"u""#.to_string();
    let any = example("temporal.yml");
    let ordered = example("temporal_ordered.yml");
    let in_order = [
        (0, "recon_cmd_a", who.clone()),
        (60, "recon_cmd_b", who.clone()),
        (120, "recon_cmd_c", who.clone()),
    ];
    let shuffled = [
        (0, "recon_cmd_c", who.clone()),
        (60, "recon_cmd_a", who.clone()),
        (120, "recon_cmd_b", who.clone()),
    ];
    assert_eq!(fire(&any, &in_order).len(), 1);
    assert_eq!(fire(&any, &shuffled).len(), 1);
    assert_eq!(fire(&ordered, &in_order).len(), 1);
    assert!(fire(&ordered, &shuffled).is_empty());
    let slow = [
        (0, "recon_cmd_a", who.clone()),
        (200, "recon_cmd_b", who.clone()),
        (301, "recon_cmd_c", who.clone()),
    ];
    assert!(fire(&any, &slow).is_empty(), "over 5 minutes");
    let two = [(0, "recon_cmd_a", who.clone()), (60, "recon_cmd_b", who)];
    assert!(fire(&any, &two).is_empty(), "all three are required");
}

#[test]
fn value_sum_avg_percentile() {
    let sum = example("value_sum.yml");
    let bytes = |n: u64| format!(r#","SourceIP":"10.0.0.1","User":"u","bytes_sent":{n}"#);
    assert!(fire(
        &sum,
        &[
            (0, "website_access", bytes(600_000)),
            (60, "website_access", bytes(400_000))
        ]
    )
    .is_empty());
    assert_eq!(
        fire(
            &sum,
            &[
                (0, "website_access", bytes(600_000)),
                (60, "website_access", bytes(400_001))
            ]
        )
        .len(),
        1
    );
    let avg = example("value_avg.yml");
    let out = |n: u64| format!(r#","SourceIP":"10.0.0.1","User":"u","BytesOut":{n}"#);
    assert!(fire(
        &avg,
        &[(0, "rule_a_id", out(400)), (60, "rule_a_id", out(500))]
    )
    .is_empty());
    assert_eq!(fire(&avg, &[(0, "rule_a_id", out(1000))]).len(), 1);
    let pct = example("value_percentile.yml");
    let img = |i: &str| format!(r#","ComputerName":"pc","Image":"{i}""#);
    let mut events: Vec<(i64, &str, String)> = (0..150)
        .map(|i| (i, "process_creation", img("svchost.exe")))
        .collect();
    events.push((200, "process_creation", img("mimikatz.exe")));
    let hits = fire(&pct, &events);
    assert_eq!(
        hits.len(),
        1,
        "a value making up under 1% of the host's processes"
    );
    assert_eq!(hits[0].origin.input_index, 150);
}
