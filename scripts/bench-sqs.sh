#!/usr/bin/env bash
# Benchmark of the live pipeline (docs/PERFORMANCE.md): generated events through SQS (moto's
# server on 127.0.0.1) into `trailwatch run`, alerts out to SNS. Reports sustained events/s and
# the latency trailwatch adds per batch (receive -> alerts confirmed), from its own histogram,
# the event-to-alert latency seen from outside (event sent -> its alert read back through SNS),
# and the injected attack scenarios found, missing or unexpected. RATE=N sends N events/s.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
EVENTS=${EVENTS:-20000}
PORT=${MOTO_PORT:-5077}

cargo build --release --locked -p trailwatch -p load-test >&2
work=$(mktemp -d)
trap 'kill ${MOTO_PID:-} ${tw:-} 2>/dev/null || true; rm -rf "$work"' EXIT
start_moto "$PORT" "$work/moto.log"

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
res=$(target/release/load-test sqs-setup --name bench)
q=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_queue"])')
a=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["alerts_queue"])')
t=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["topic_arn"])')
metrics=127.0.0.1:9879
cat > "$work/trailwatch.toml" <<TOML
[rules]
paths = ["$PWD/rules"]
[source.sqs]
queue_url = "$q"
pollers = ${POLLERS:-4}
wait_seconds = 1
[sink.sns]
topic_arn = "$t"
[metrics]
listen = "$metrics"
[windows]
lateness = "1h"   # generated event time runs ~12x the wall clock: see load-test sqs-run
# (which sends the traffic in stretches of 20 minutes of event time, waiting for the queue to drain
# between them; figures before 2026-12-03 had no such waits)
[alerts]
hmac_key_file = "$work/hmac.key"
TOML
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/hmac.key"
target/release/trailwatch run --config "$work/trailwatch.toml" 2> "$work/trailwatch.log" &
tw=$!
sleep 1
report=$(target/release/load-test sqs-run --events-queue "$q" --alerts-queue "$a" --metrics "$metrics" --events "$EVENTS" --rate "${RATE:-0}" --check-rules "$PWD/rules")
echo "$report" >&2
echo "$report" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("| events | seconds until drained | events/s | alerts | event-to-alert p50 / p99 (ms) | batch latency p50 / p99 (ms) | scenarios found / missing / unexpected |")
print("|---|---|---|---|---|---|---|")
e, s = r["event_to_alert"], r["scenarios"]
cells = [r["events"], r["seconds_until_drained"], r["events_per_second"], r["alerts_received"],
         "%s / %s" % (e["p50_ms"], e["p99_ms"]), "%s / %s" % (r["batch_latency_ms_p50"], r["batch_latency_ms_p99"]),
         "%s / %s / %s" % (s["found"], len(s["missing"]), len(s["unexpected"]))]
print("| " + " | ".join(str(c) for c in cells) + " |")
'
