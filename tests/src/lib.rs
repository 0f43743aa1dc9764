//! Helpers for the end-to-end tests: where the binary and the shared corpus are.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The third-party test corpus beside the project (`../shared/corpus`).
pub fn corpus() -> PathBuf {
    root().join("../shared/corpus")
}

/// The `trailwatch` binary of the profile these tests were built with.
///
/// `scripts/test.sh` builds it before running tests (`cargo build --workspace --bins`);
/// cargo cannot be invoked from inside a running `cargo test`.
pub fn trailwatch_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("trailwatch");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Runs `load-test ARGS...` (built beside `trailwatch`) and returns its output.
pub fn load_test(args: &[&str]) -> Output {
    let bin = trailwatch_bin().with_file_name("load-test");
    Command::new(bin)
        .args(args)
        .output()
        .expect("running load-test")
}

/// Runs `trailwatch ARGS...` and returns its output.
pub fn trailwatch(args: &[&str]) -> Output {
    Command::new(trailwatch_bin())
        .args(args)
        .output()
        .expect("running trailwatch")
}

/// `trailwatch` with test AWS credentials and region, never the instance metadata service; the
/// endpoint is `endpoint` (moto's), or none at all.
pub fn trailwatch_aws(endpoint: Option<&str>) -> Command {
    let mut cmd = Command::new(trailwatch_bin());
    match endpoint {
        Some(url) => cmd.env("AWS_ENDPOINT_URL", url),
        None => cmd.env_remove("AWS_ENDPOINT_URL"),
    };
    cmd.env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Parses JSON lines.
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}
