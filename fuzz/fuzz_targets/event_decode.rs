//! Any bytes as one SQS message / Kafka record / line: decode, match, correlate, gate.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use trailwatch::pipeline::{Pipeline, Settings};

fuzz_target!(|data: &[u8]| {
    let mut p = Pipeline::new(common::rule_set(), None, &Settings::default(), None);
    let mut out = Vec::new();
    if let Err(e) = p.decode(data, &mut out) {
        // Errors are logged per message: short, never the event.
        assert!(e.to_string().len() < 1_000, "a long decode error");
    }
    p.flush(&mut out);
});
