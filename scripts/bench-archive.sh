#!/usr/bin/env bash
# What the audit archive costs the live path (docs/PERFORMANCE.md, "The audit archive"): CPU
# per event of `trailwatch run` on Kafka (tansu on 127.0.0.1) at a fixed rate, with alerts to a
# file only, and with [sink.archive] to a directory as well, interleaved (MODES); then the
# archive's size and verify-archive's verdict.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
EVENTS=${EVENTS:-30000}
RATE=${RATE:-1000}
KAFKA_PORT=${KAFKA_PORT:-29392}
cargo build --release --locked -p trailwatch -p load-test >&2
tw=target/release/trailwatch
lt=target/release/load-test
work=$(mktemp -d)
trap 'kill ${TANSU_PID:-} 2>/dev/null || true; rm -rf "$work"' EXIT
start_tansu "$KAFKA_PORT" "$work"
brokers="127.0.0.1:$KAFKA_PORT"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/hmac.key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/archive.key"
"$lt" generate --events "$EVENTS" --seed 11 -o "$work/events.jsonl" >&2
run() { # mode
  local mode=$1 topic="cost-$1-$$-$RANDOM" cfg="$work/$1.toml" port=$((39500 + RANDOM % 400))
  { printf '[rules]\npaths = ["%s/rules"]\n' "$PWD"
    kafka_source "$brokers" "$topic" "$topic" 10
    cat <<TOML
[sink]
jsonl = "$work/$mode-alerts.jsonl"
[metrics]
listen = "127.0.0.1:$port"
[alerts]
hmac_key_file = "$work/hmac.key"
TOML
  } > "$cfg"
  if [ "$mode" = archive ]; then
    cat >> "$cfg" <<TOML
[sink.archive]
key_file = "$work/archive.key"
spool = "$work/spool-$topic"
dir = "$work/archive-$topic"
TOML
  fi
  "$lt" kafka-produce --brokers "$brokers" --topic "$topic" --partitions 3 /dev/null >/dev/null
  "$tw" run --config "$cfg" 2> "$cfg.log" & local pid=$!
  for _ in $(seq 300); do grep -q "partitions assigned" "$cfg.log" && break; sleep 0.2; done
  "$lt" kafka-produce --brokers "$brokers" --topic "$topic" --rate "$RATE" "$work/events.jsonl" >/dev/null
  for _ in $(seq 600); do
    n=$(events_total "127.0.0.1:$port")
    [ "${n:-0}" -ge "$EVENTS" ] && break; sleep 0.1
  done
  local cpu; cpu=$(cpu_seconds $pid)
  kill -TERM $pid; wait $pid || true
  python3 -c "print('$mode: events $n, cpu {:.2f} s, {:.1f} us/event'.format($cpu, $cpu/$n*1e6))"
  if [ "$mode" = archive ]; then
    du -sb "$work/archive-$topic" | awk '{print "archive bytes", $1}'
    find "$work/archive-$topic" -name '*.jsonl.gz' | wc -l | awk '{print "objects", $1}'
    "$tw" verify-archive --key-file "$work/archive.key" "$work/archive-$topic" | tail -1
  fi
}
for m in ${MODES:-plain archive plain archive}; do run "$m"; done
