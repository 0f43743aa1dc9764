//! Any bytes as a rule file: parse, lint and compile; a set that compiles then matches events.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use trailwatch::engine::RuleSet;
use trailwatch::pipeline::{Pipeline, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the loader rejects non-UTF-8 files before parsing
    };
    let (rules, errors) =
        trailwatch::rule::parse_file(Path::new("f.yml"), text, &Default::default());
    for e in &errors {
        assert!(e.to_string().len() < 1_200, "a long rule error");
    }
    for r in &rules {
        let _ = trailwatch::rule::lint::lint(r);
    }
    if !errors.is_empty() {
        return;
    }
    if let Ok(set) = RuleSet::compile(rules) {
        let mut p = Pipeline::new(&set, None, &Settings::default(), None);
        let mut out = Vec::new();
        for e in common::events() {
            let _ = p.decode(e.as_bytes(), &mut out);
        }
        p.flush(&mut out);
    }
});
