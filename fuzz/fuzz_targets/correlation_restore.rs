//! Any bytes as the JSON body of a correlation snapshot, given a valid header and checksum, so
//! libFuzzer explores the body rather than the checksum: restore, then process events.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use trailwatch::pipeline::{Pipeline, Settings};

fuzz_target!(|body: &[u8]| {
    let sum = xxhash_rust::xxh3::xxh3_64(body);
    let mut bytes = format!("TRAILWATCH-STATE 1 {sum:016x}\n").into_bytes();
    bytes.extend_from_slice(body);
    let mut p = Pipeline::new(common::rule_set(), None, &Settings::default(), None);
    if p.restore(&bytes).is_ok() {
        let mut out = Vec::new();
        for e in common::events() {
            let _ = p.decode(e.as_bytes(), &mut out);
        }
        p.flush(&mut out);
        let _ = p.snapshot();
    }
});
