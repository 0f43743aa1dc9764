//! Differential test of the optimiser: the eventName/eventSource index must never hide a match.

use std::io::BufRead;
use trailwatch::engine::{MatchScratch, RuleSet};
use trailwatch::event::{Decoder, Limits};
use trailwatch::rule::{load_paths, Placeholders};
use trailwatch_e2e::corpus;

#[test]
fn indexed_matching_equals_trying_every_rule() {
    let (rules, errors) = load_paths(&[corpus().join("sigma-cloudtrail")], &Placeholders::new());
    assert!(errors.is_empty(), "{errors:?}");
    let set = RuleSet::compile(rules).expect("rules compile");
    let (by_name, by_source, always) = set.index_stats();
    assert!(
        by_name + by_source > 40,
        "most rules should be indexed: {by_name}/{by_source}/{always}"
    );
    let mut decoder = Decoder::new(set.fields(), Limits::default());
    let mut scratch = MatchScratch::default();
    let mut hits = Vec::new();
    let mut events = 0;
    for set_name in ["panther", "stratus"] {
        let file = std::fs::File::open(corpus().join(format!("{set_name}/events.jsonl"))).unwrap();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.unwrap();
            decoder
                .decode(line.as_bytes(), &mut |item| {
                    let ev = item.unwrap();
                    events += 1;
                    set.matches(ev, &mut scratch, &mut hits);
                    let brute: Vec<u32> = (0..set.rules().len())
                        .filter(|&i| set.rule_matches(i, ev))
                        .map(|i| i as u32)
                        .collect();
                    assert_eq!(hits, brute);
                })
                .unwrap();
        }
    }
    assert_eq!(events, 785);
}
