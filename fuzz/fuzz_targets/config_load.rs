//! Any bytes as trailwatch.toml: load, validate, derive the pipeline settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    if let Ok(c) = trailwatch::config::Config::load(file.path()) {
        let _ = c.pipeline_settings(1 << 20);
        let _ = c.lateness();
        let _ = c.snapshot_interval();
        let _ = c.alerts.limits();
    }
});
