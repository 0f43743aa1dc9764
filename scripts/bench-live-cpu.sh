#!/usr/bin/env bash
# The live path's CPU per event against replay's (docs/PERFORMANCE.md, issue target: within 2x):
# `trailwatch run` as one member of a Kafka consumer group (tansu on 127.0.0.1, 3 partitions),
# events produced at RATE events/s, alerts as JSON lines on stdout (a file sink would add an
# fsync a batch). Its CPU time (every thread's, librdkafka's included, from the scheduler's
# account) over a window in the middle of the run, divided by the events counted in it (see
# `window`); replay's is the user + system time of `trailwatch replay --threads 1` over the same
# stream and rules. The test broker is the bottleneck, so CPU time is measured, not wall time.
# Prints a markdown table.
#
# TRANSPORT=sqs measures the SQS source instead: moto's server on 127.0.0.1, kept-alive
# connections (scripts/moto-keepalive.py), EventBridge envelopes sent by `load-test sqs-run`,
# the service's default pollers and long-poll wait, RATES default 50 (moto's server takes about
# 90 events/s on this machine; a backlog would only make batches fuller).
#
# With TRANSPORT=sqs it also prints `load-test sqs-cost`: the CPU each kind of SQS request costs
# through the AWS SDK, the floor of the live SQS path.
#
# TW=path compares another build (NO_BUILD=1 skips building this one).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
EVENTS=${EVENTS:-20000}
TRANSPORT=${TRANSPORT:-kafka}
if [ "$TRANSPORT" = sqs ]; then RATES=${RATES:-50}; else RATES=${RATES:-1000}; fi
RUNS=${RUNS:-3}
FETCH_WAIT_MS=${FETCH_WAIT_MS:-10}  # tansu answers a fetch only after sleeping half of it
PORT=${KAFKA_PORT:-29392}
METRICS=${METRICS:-127.0.0.1:9983}

[ -n "${NO_BUILD:-}" ] || cargo build --release --locked -p trailwatch -p load-test >&2
tw=${TW:-target/release/trailwatch}
lt=target/release/load-test
if [ "$TRANSPORT" = sqs ]; then
  work=$(mktemp -d)
  pids=()
  trap 'kill "${pids[@]}" ${twpid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
  start_moto_keepalive "${MOTO_PORT:-5079}" "$work/moto.log"
  pids+=("$MOTO_PID")
  export AWS_ENDPOINT_URL="http://127.0.0.1:${MOTO_PORT:-5079}" AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/hmac.key"
else
  kafka_bench "$PORT"
fi
"$lt" generate --events "$EVENTS" --seed 5 -o "$work/events.jsonl" >&2
records=$(wc -l < "$work/events.jsonl")
# Replay's cost is measured over at least 50,000 events of the same stream (its first EVENTS are
# the live run's): over a few thousand, start-up (about 20 ms) and the clock's resolution
# decided the figure (2,000 events measured 5.0 µs an event where 200,000 measure about 2).
REPLAY_EVENTS=$((EVENTS > 50000 ? EVENTS : 50000))
"$lt" generate --events "$REPLAY_EVENTS" --seed 5 -o "$work/replay.jsonl" >&2

# config < SOURCE: a run's configuration around the source section read from stdin: the shipped
# rules, alerts as JSON lines on stdout (a file sink would add an fsync a batch), metrics.
config() {
  printf '[rules]\npaths = ["%s/rules"]\n' "$PWD"
  cat
  cat <<TOML
[sink]
jsonl = "-"
[metrics]
listen = "$METRICS"
[alerts]
hmac_key_file = "$work/hmac.key"
TOML
}

# One live run at a rate: prints microseconds of CPU per event.
live() {
  local rate=$1 topic="cpu-$$-$2" cfg="$work/run-$2.toml"
  kafka_source "$brokers" "$topic" "$topic" "$FETCH_WAIT_MS" | config > "$cfg"
  "$lt" kafka-produce --brokers "$brokers" --topic "$topic" --partitions 3 /dev/null >/dev/null
  "$tw" run --config "$cfg" > "$work/alerts-$2.jsonl" 2> "$cfg.log" &
  twpid=$!
  for _ in $(seq 300); do grep -q "partitions assigned" "$cfg.log" && break; sleep 0.1; done
  "$lt" kafka-produce --brokers "$brokers" --topic "$topic" --rate "$rate" "$work/events.jsonl" >/dev/null &
  local producer=$!
  window "$rate"
  wait "$producer"
  kill "$twpid"; wait "$twpid" 2>/dev/null || true; twpid=""
}

# window RATE: the CPU of process $twpid per event counted on its /metrics, in microseconds,
# from when a tenth of the EVENTS sent at RATE were counted, over a fixed time (seven tenths of
# the sending). No scrape inside it: a scrape costs about as much as a small batch (the four a
# second an earlier version made were about a microsecond an event at 1,000 events/s).
window() {
  local c0 c1 n0="" n1
  for _ in $(seq 600); do
    n0=$(events_total "$METRICS"); n0=${n0:-0}
    [ "$n0" -ge $((EVENTS / 10)) ] && break
    sleep 0.2
  done
  c0=$(cpu_ns "$twpid"); n0=$(events_total "$METRICS")
  sleep "$(python3 -c "print(max(2.0, $EVENTS / $1 * 0.7))")"
  c1=$(cpu_ns "$twpid"); n1=$(events_total "$METRICS")
  python3 -c "print(f'{($c1 - $c0) / 1e3 / ($n1 - $n0):.1f}')"
}

# One live run through SQS at a rate: prints microseconds of CPU per event. The same events as
# the file (`sqs-run` generates them with the same seed), sent as EventBridge envelopes.
live_sqs() {
  local rate=$1 cfg="$work/run-$2.toml" res q a
  res=$("$lt" sqs-setup --name "cpu-$$-$2")
  q=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_queue"])')
  a=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["alerts_queue"])')
  printf '[source.sqs]\nqueue_url = "%s"\n' "$q" | config > "$cfg"
  "$tw" run --config "$cfg" > "$work/alerts-$2.jsonl" 2> "$cfg.log" &
  twpid=$!
  for _ in $(seq 100); do events_total "$METRICS" >/dev/null && break; sleep 0.1; done
  "$lt" sqs-run --events-queue "$q" --alerts-queue "$a" --metrics "$METRICS" --seed 5 \
    --events "$EVENTS" --rate "$rate" > /dev/null 2>&1 &
  local sender=$!
  window "$rate"
  kill "$sender" 2>/dev/null; wait "$sender" 2>/dev/null || true
  kill "$twpid"; wait "$twpid" 2>/dev/null || true; twpid=""
}

# Replay of the same file on one thread: microseconds of CPU per event, best of RUNS, less the
# fixed cost of a replay of its first event alone (start-up: rules compiled, files opened).
replay_us() {
  head -n 1 "$work/events.jsonl" > "$work/one.jsonl"
  python3 - "$tw" "$PWD/rules" "$work/replay.jsonl" "$work/one.jsonl" "$REPLAY_EVENTS" "$RUNS" "$work/hmac.key" <<'PY'
import resource, subprocess, sys
tw, rules, events, one = sys.argv[1:5]
records, runs, key = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
def best(path):
    b = None
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([tw, "replay", "--quiet", "--threads", "1", "--rules", rules,
                        "--hmac-key-file", key, "--output", "/dev/null", path],
                       check=True, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        b = cpu if b is None else min(b, cpu)
    return b
print(f"{(best(events) - best(one)) / (records - 1) * 1e6:.1f}")
PY
}

replay=$(replay_us)
echo "replay, one thread: $replay µs/event of CPU (best of $RUNS)" >&2
if [ "$TRANSPORT" = sqs ]; then setting=SQS; column=source; else setting=$FETCH_WAIT_MS; column=fetch.wait.max.ms; fi
echo "| rate (events/s) | $column | live µs/event, $RUNS runs | median | against replay ($replay µs) |"
echo "|---|---|---|---|---|"
run=0
for rate in $RATES; do
  all=()
  for _ in $(seq "$RUNS"); do
    run=$((run + 1))
    if [ "$TRANSPORT" = sqs ]; then all+=("$(live_sqs "$rate" "$run")"); else all+=("$(live "$rate" "$run")"); fi
  done
  python3 - "$rate" "$setting" "$replay" "${all[@]}" <<'PY'
import statistics, sys
rate, wait, replay = sys.argv[1], sys.argv[2], float(sys.argv[3])
runs = [float(x) for x in sys.argv[4:]]
m = statistics.median(runs)
print(f"| {rate} | {wait} | {', '.join(f'{r:.1f}' for r in runs)} | {m:.1f} | {m / replay:.1f}x |")
PY
done
if [ "$TRANSPORT" = sqs ]; then
  # The floor under those figures: what the AWS SDK's requests alone cost this process (a batch
  # of ten events takes a receive and a delete), on both kinds of runtime.
  echo
  "$lt" sqs-cost --requests 200
  echo
  "$lt" sqs-cost --requests 200 --current-thread
fi
