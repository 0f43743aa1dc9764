#!/usr/bin/env bash
# Benchmark of the Kafka source (docs/PERFORMANCE.md): generated events produced to a
# 3-partition topic on tansu (127.0.0.1), then consumed by one and by two `trailwatch run`
# instances in a consumer group (alerts to a JSON-lines file, so the figure is Kafka plus
# trailwatch). Reports events/s from 10% to 100% of the events (group joins excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
EVENTS=${EVENTS:-200000}
PORT=${KAFKA_PORT:-29092}

cargo build --release --locked -p trailwatch -p load-test >&2
kafka_bench "$PORT"

target/release/load-test generate --events "$EVENTS" --seed 7 -o "$work/events.jsonl" >&2
topic="bench-$$"
produced=$(target/release/load-test kafka-produce --brokers "$brokers" --topic "$topic" --partitions 3 "$work/events.jsonl")
echo "produce: $produced" >&2

# Sum of events_total over the instances' metrics endpoints.
total() {
  local sum=0 n
  for m in "$@"; do
    n=$(curl -sf "http://$m/metrics" | awk '/^trailwatch_events_total /{print $2}')
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

echo "| instances | events | seconds (10% to 100%) | events/s |"
echo "|---|---|---|---|"
for n in 1 2; do
  group="bench-$$-$n"
  metrics=()
  for i in $(seq "$n"); do
    m="127.0.0.1:$((9890 + 10 * n + i))"
    metrics+=("$m")
    { printf '[rules]\npaths = ["%s/rules"]\n' "$PWD"
      kafka_source "$brokers" "$topic" "$group"
      cat <<TOML
[sink]
jsonl = "$work/alerts-$n-$i.jsonl"
[metrics]
listen = "$m"
[alerts]
hmac_key_file = "$work/hmac.key"
TOML
    } > "$work/tw-$n-$i.toml"
    target/release/trailwatch run --config "$work/tw-$n-$i.toml" 2> "$work/tw-$n-$i.log" &
    pids+=($!)
  done
  start=""
  deadline=$((SECONDS + 600))
  while [ "$SECONDS" -lt "$deadline" ]; do
    done_n=$(total "${metrics[@]}")
    now=$(date +%s.%N)
    if [ -z "$start" ] && [ "$done_n" -ge $((EVENTS / 10)) ]; then start=$now; from=$done_n; fi
    [ "$done_n" -ge "$EVENTS" ] && break
    sleep 0.05
  done
  python3 -c "s,e,f,t=$start,$now,$from,$done_n; print(f'| $n | {t} | {e-s:.2f} | {(t-f)/(e-s):,.0f} |')"
  kill "${pids[@]:1}" 2>/dev/null || true
  wait "${pids[@]:1}" 2>/dev/null || true
  pids=("${pids[0]}")
done
