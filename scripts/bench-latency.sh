#!/usr/bin/env bash
# Event-to-page latency by kind of rule (docs/PERFORMANCE.md): single-event rules, correlations
# that fire on their completing event (early) and correlations that wait for the watermark
# (buffered: ordered temporal, geo), through Kafka (tansu) with alerts read back through SNS
# (moto), and through SQS/SNS (moto); geo rules use the database of `load-test geoip`. Each
# transport runs twice: steady traffic (events keep flowing after every scenario), and quiet
# (after each event that completes a scenario correlation nothing is sent for PAUSE seconds).
# trailwatch runs with lateness = max_delivery_delay = DELAY, so on a quiet stream a buffered
# correlation pages about DELAY after its completing event. Everything listens on 127.0.0.1.
# Prints markdown on stdout, the JSON reports on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
KAFKA_EVENTS=${KAFKA_EVENTS:-18000}  # from about 17,000 events on, every scenario sits inside the
KAFKA_RATE=${KAFKA_RATE:-200}        # background traffic, which goes on after it
SQS_EVENTS=${SQS_EVENTS:-18000}
SQS_RATE=${SQS_RATE:-25}             # about what moto's SQS takes
DELAY=${DELAY:-10s}
FETCH_WAIT_MS=${FETCH_WAIT_MS:-10}   # librdkafka fetch.wait.max.ms against tansu (see below)
PAUSE=${PAUSE:-25}
TRANSPORTS=${TRANSPORTS:-kafka sqs}
MODES=${MODES:-steady quiet}
MOTO_PORT=${MOTO_PORT:-5177}
KAFKA_PORT=${KAFKA_PORT:-29192}
METRICS=${METRICS:-127.0.0.1:9971}

cargo build --release --locked -p trailwatch -p load-test >&2
tw=target/release/trailwatch
lt=target/release/load-test
moto_install

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" ${twpid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
start_moto "$MOTO_PORT" "$work/moto.log"
pids+=("$MOTO_PID")
start_tansu "$KAFKA_PORT" "$work"
pids+=("$TANSU_PID")
brokers="127.0.0.1:$KAFKA_PORT"
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test \
  AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/hmac.key"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# The common part of trailwatch's configuration.
common() {
  cat <<TOML
[rules]
paths = ["$PWD/rules"]
[sink.sns]
topic_arn = "$1"
[metrics]
listen = "$METRICS"
[windows]
lateness = "$DELAY"
max_delivery_delay = "$DELAY"
[alerts]
hmac_key_file = "$work/hmac.key"
[geoip]
cities = ["$work/scenarios.mmdb"]
TOML
}

start_trailwatch() { # config file
  "$tw" run --config "$1" 2> "$1.log" &
  twpid=$!
}

stop_trailwatch() { # metrics file
  curl -sf "http://$METRICS/metrics" > "$1" || true
  kill "$twpid" 2>/dev/null || true
  wait "$twpid" 2>/dev/null || true
  twpid=""
}

"$lt" geoip --output "$work/scenarios.mmdb"
"$lt" generate --events "$KAFKA_EVENTS" --seed 5 --truth "$work/truth.jsonl" -o "$work/events.jsonl" >&2

kafka_run() { # steady|quiet
  local mode=$1 res topic cfg
  res=$("$lt" sqs-setup --name "lat-kafka-$mode")
  topic="latency-$mode-$$"
  cfg="$work/kafka-$mode.toml"
  { common "$(echo "$res" | field topic_arn)"
    # tansu answers a fetch only after sleeping half its max wait (librdkafka's default:
    # 500 ms), even with data ready; Kafka brokers answer at once: this sets the floor.
    kafka_source "$brokers" "$topic" "$topic" "$FETCH_WAIT_MS"
  } > "$cfg"
  # Create the topic, start trailwatch, and produce only once it owns the partitions.
  "$lt" kafka-produce --brokers "$brokers" --topic "$topic" --partitions 3 /dev/null >/dev/null
  start_trailwatch "$cfg"
  for _ in $(seq 300); do grep -q "partitions assigned" "$cfg.log" && break; sleep 0.2; done
  local pause=()
  [ "$mode" = quiet ] && pause=(--pause-after-completion "$PAUSE")
  "$lt" kafka-produce --brokers "$brokers" --topic "$topic" --rate "$KAFKA_RATE" \
    --alerts-queue "$(echo "$res" | field alerts_queue)" --truth "$work/truth.jsonl" \
    --rules "$PWD/rules" --geoip --quiet-seconds 15 "${pause[@]}" "$work/events.jsonl" > "$work/kafka-$mode.json"
  stop_trailwatch "$work/kafka-$mode.metrics"
  echo "kafka $mode: $(cat "$work/kafka-$mode.json")" >&2
}

sqs_run() { # steady|quiet
  local mode=$1 res cfg
  res=$("$lt" sqs-setup --name "lat-sqs-$mode")
  cfg="$work/sqs-$mode.toml"
  # One poller: the batches arrive in the order they were sent (4 pollers reorder them by more
  # than a 10 s lateness of generated time), so no stretches either (`--stretch 0`: waiting for
  # the queue to drain between them would add to the latency of buffered correlations).
  { common "$(echo "$res" | field topic_arn)"
    cat <<TOML
[source.sqs]
queue_url = "$(echo "$res" | field events_queue)"
pollers = 1
wait_seconds = 1
TOML
  } > "$cfg"
  start_trailwatch "$cfg"
  sleep 1
  local pause=()
  [ "$mode" = quiet ] && pause=(--pause-after-completion "$PAUSE")
  "$lt" sqs-run --events-queue "$(echo "$res" | field events_queue)" \
    --alerts-queue "$(echo "$res" | field alerts_queue)" --metrics "$METRICS" \
    --events "$SQS_EVENTS" --rate "$SQS_RATE" --check-rules "$PWD/rules" --stretch 0 --geoip "${pause[@]}" > "$work/sqs-$mode.json"
  stop_trailwatch "$work/sqs-$mode.metrics"
  echo "sqs $mode: $(cat "$work/sqs-$mode.json")" >&2
}

for t in $TRANSPORTS; do
  for mode in $MODES; do "${t}_run" "$mode"; done
done

python3 - "$work" "$DELAY" "$PAUSE" "$TRANSPORTS" "$MODES" <<'PY'
import json, os, re, sys
work, delay, pause, transports, modes = sys.argv[1:]
def quantile(text, name, q):
    # Prometheus histogram quantile, interpolated within its bucket.
    b = sorted((float("inf") if le == "+Inf" else float(le), float(n))
               for le, n in re.findall(name + r'_bucket\{le="([^"]+)"\} (\S+)', text))
    if not b or b[-1][1] == 0:
        return None
    rank, prev = q * b[-1][1], (0.0, 0.0)
    for le, n in b:
        if n >= rank:
            if le == float("inf"):
                return prev[0] * 1000
            return (prev[0] + (le - prev[0]) * ((rank - prev[1]) / (n - prev[1]) if n > prev[1] else 1)) * 1000
        prev = (le, n)
def ms(v):
    return "–" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
def each(p, firing):
    xs = [c for c in p["correlations"] if c["firing"] == firing]
    return ", ".join(f'{c["scenario"]} {ms(c["latency_ms"])}' for c in xs if c["latency_ms"] is not None) or "–"
print(f"lateness = max_delivery_delay = {delay}; quiet: nothing sent for {pause} s after each completing event")
print()
print("| transport | traffic | single-event rules p50 / p99 / max (ms, n) | early correlations (ms) | buffered correlations (ms) | trailwatch batch p50 / p99 (ms) | scenarios found / missing / unexpected |")
print("|---|---|---|---|---|---|---|")
names = {"kafka": "Kafka (tansu) → SNS (moto)", "sqs": "SQS → SNS (moto)"}
for t in transports.split():
    for mode in modes.split():
        r = json.load(open(f"{work}/{t}-{mode}.json"))
        m = open(f"{work}/{t}-{mode}.metrics").read() if os.path.exists(f"{work}/{t}-{mode}.metrics") else ""
        batch = [quantile(m, "trailwatch_sink_latency_seconds", q) for q in (0.5, 0.99)]
        p, s = r["event_to_page"], r["scenarios"]
        se = p["single_event"]
        cells = [names[t], mode,
                 f'{ms(se["p50_ms"])} / {ms(se["p99_ms"])} / {ms(se["max_ms"])} ({se["measured"]})',
                 each(p, "early"), each(p, "buffered"),
                 f"{ms(batch[0])} / {ms(batch[1])}",
                 f'{s["found"]} / {len(s["missing"])} / {len(s["unexpected"])}']
        print("| " + " | ".join(str(c) for c in cells) + " |")
PY
