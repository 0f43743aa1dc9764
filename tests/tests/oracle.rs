//! The engine against the reference oracle: the same (rule, event) hits, none missing, none extra.

use std::collections::BTreeSet;
use trailwatch_e2e::{corpus, json_lines, trailwatch};

fn expected(set: &str) -> BTreeSet<(String, u64)> {
    let text = std::fs::read(corpus().join(format!("oracle/expected/{set}.jsonl"))).unwrap();
    json_lines(&text)
        .into_iter()
        .map(|v| {
            (
                v["rule_id"].as_str().unwrap().to_string(),
                v["event_index"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn replayed(set: &str) -> BTreeSet<(String, u64)> {
    let rules = corpus().join("sigma-cloudtrail");
    let events = corpus().join(format!("{set}/events.jsonl"));
    let out = trailwatch(&[
        "replay",
        // The corpus reuses eventIDs across distinct test cases: evaluate every record.
        "--keep-duplicates",
        "--rules",
        rules.to_str().unwrap(),
        "--emit",
        "hits",
        "--quiet",
        events.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
        .into_iter()
        .map(|v| {
            (
                v["rule_id"].as_str().unwrap().to_string(),
                v["input_index"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn assert_same(set: &str, count: usize) {
    let want = expected(set);
    let got = replayed(set);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{set}: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(got.len(), count, "{set}");
}

#[test]
fn panther_events_match_the_oracle_exactly() {
    assert_same("panther", 330);
}

#[test]
fn stratus_events_match_the_oracle_exactly() {
    assert_same("stratus", 80);
}

#[test]
fn eventbridge_envelopes_match_the_oracle_exactly() {
    // The oracle evaluates `detail`; trailwatch reads the envelopes as they arrive.
    assert_same("eventbridge", 9);
}

#[test]
fn all_sigmahq_cloudtrail_rules_load_unchanged() {
    let rules = corpus().join("sigma-cloudtrail");
    let out = trailwatch(&["check", rules.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("57 rules loaded, 0 errors"), "{stdout}");
}
