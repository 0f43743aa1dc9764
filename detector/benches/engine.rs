//! Per-event cost of decoding and of matching, on the project's own sample events
//! (`detector/samples/eventbridge.jsonl`, written by the load-test generator) and the 57
//! SigmaHQ CloudTrail rules from the shared corpus (the shipped pack when that is absent).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;
use trailwatch::engine::{MatchScratch, RuleSet};
use trailwatch::event::{Decoder, Limits};
use trailwatch::rule::{load_paths, Placeholders};

fn rule_set() -> RuleSet {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = root.join("../shared/corpus/sigma-cloudtrail");
    let dir = if corpus.is_dir() {
        corpus
    } else {
        root.join("rules")
    };
    let (rules, errors) = load_paths(&[dir], &Placeholders::new());
    assert!(errors.is_empty(), "{errors:?}");
    RuleSet::compile(rules).expect("rules compile")
}

/// Bare records (the `detail` of each sample envelope), one per line.
fn records() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/eventbridge.jsonl");
    std::fs::read_to_string(path)
        .expect("sample events")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("sample JSON");
            v["detail"].to_string()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let set = rule_set();
    let events = records();
    let bytes: usize = events.iter().map(String::len).sum();
    let mut group = c.benchmark_group("per_event");
    group.throughput(Throughput::Elements(events.len() as u64));

    group.bench_function("decode", |b| {
        let mut decoder = Decoder::new(set.fields(), Limits::default());
        b.iter(|| {
            let mut n = 0;
            for e in &events {
                decoder
                    .decode(e.as_bytes(), &mut |_| n += 1)
                    .expect("decodes");
            }
            n
        })
    });

    group.bench_function("decode_and_match", |b| {
        let mut decoder = Decoder::new(set.fields(), Limits::default());
        let mut scratch = MatchScratch::default();
        let mut hits = Vec::new();
        b.iter(|| {
            let mut n = 0;
            for e in &events {
                decoder
                    .decode(e.as_bytes(), &mut |item| {
                        if let Ok(ev) = item {
                            set.matches(ev, &mut scratch, &mut hits);
                            n += hits.len();
                        }
                    })
                    .expect("decodes");
            }
            n
        })
    });

    group.bench_function("serde_json_value_parse", |b| {
        b.iter(|| {
            events
                .iter()
                .map(|e| {
                    serde_json::from_str::<serde_json::Value>(e)
                        .map(|v| v.is_object())
                        .unwrap_or(false) as usize
                })
                .sum::<usize>()
        })
    });
    group.finish();
    eprintln!(
        "{} events, {} bytes on average",
        events.len(),
        bytes / events.len().max(1)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
