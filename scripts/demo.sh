#!/usr/bin/env bash
# README command 1: build trailwatch and replay the bundled sample CloudTrail data through the
# shipped rules. Needs only the Rust toolchain (cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p trailwatch
bin=target/release/trailwatch

echo "== checking the rule pack" >&2
"$bin" check rules/

out=${OUT:-target/demo-alerts.jsonl}
echo "== replaying detector/samples/ (S3 log-file layout, gzip, and EventBridge envelopes)" >&2
# In event-time order: the S3 log file (22:15 on) before the EventBridge events (01:00 on), so the
# correlations see them as they happened.
"$bin" replay --rules rules/ --output "$out" detector/samples/AWSLogs detector/samples/eventbridge.jsonl
echo "== $(wc -l < "$out") alerts written to $out; the first one:" >&2
head -n 1 "$out"
