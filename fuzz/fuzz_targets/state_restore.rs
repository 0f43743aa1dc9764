//! Any bytes as a pipeline state file (`TRAILWATCH-PIPELINE`, or an older `TRAILWATCH-STATE`):
//! restore; an accepted state must then process events and snapshot again.
//!
//! Random bytes rarely pass the checksum: seed with real states (docs/FUZZING.md) and note
//! that the `fuzz_state_typed` proptest recomputes the checksum after mutating.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use trailwatch::pipeline::{Pipeline, Settings};

fuzz_target!(|data: &[u8]| {
    let mut p = Pipeline::new(common::rule_set(), None, &Settings::default(), None);
    if p.restore(data).is_ok() {
        let mut out = Vec::new();
        for e in common::events() {
            let _ = p.decode(e.as_bytes(), &mut out);
        }
        p.flush(&mut out);
        let _ = p.snapshot();
    }
});
