#!/usr/bin/env bash
# Benchmarks behind docs/PERFORMANCE.md: trailwatch replay against rsigma 0.26 and against a bare
# serde_json::Value parse of the same file, one thread each, best of N runs; then peak RSS as the
# input grows, correlation and first-seen state against live keys, and the live path's CPU per
# event on Kafka and on SQS (scripts/bench-live-cpu.sh; starts tansu and moto). Prints a
# markdown report on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
RUNS=${RUNS:-3}
RULES=${RULES:-../shared/corpus/sigma-cloudtrail}
dir=target/bench
mkdir -p "$dir"

cargo build --release --locked -p trailwatch -p load-test >&2
tw=target/release/trailwatch
lt=target/release/load-test
# PGO=1: the profile-guided build of scripts/build-pgo.sh (about 20 minutes more) throughout.
build=""
if [ "${PGO:-0}" = 1 ]; then
  tw=$(scripts/build-pgo.sh)
  build=" (PGO build)"
fi
RSIGMA=0.26.0
# cargo install puts it in $CARGO_HOME/bin, which may not be on PATH.
rsigma=$(command -v rsigma || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rsigma")
if ! "$rsigma" --version 2>/dev/null | grep -qF "$RSIGMA"; then
  echo "== installing rsigma $RSIGMA (about 10 minutes, once)" >&2
  # 0.26.0 declares rust-version 1.96; it builds with 1.95 too.
  cargo install "rsigma@$RSIGMA" --ignore-rust-version >&2
  rsigma="${CARGO_HOME:-$HOME/.cargo}/bin/rsigma"
fi

events=$dir/events-200k.jsonl
[ -s "$events" ] || "$lt" generate --events 200000 --seed 42 --output "$events"
n=$(wc -l < "$events")


# Each "WALL CPU" assigned before it is split, so a failed run stops the script (set -e).
m_tw=$(best_times taskset -c 0 "$tw" replay --quiet --threads 1 --rules "$RULES" --emit hits --output /dev/null "$events")
m_rs=$(best_times taskset -c 0 "$rsigma" engine eval -r "$RULES" -e "@$events")
m_pb=$(best_times taskset -c 0 "$lt" parse-baseline "$events")
read -r t_tw c_tw <<<"$m_tw"
read -r t_rs c_rs <<<"$m_rs"
read -r t_pb c_pb <<<"$m_pb"

# The floor: one rule that reads only eventSource and eventName, so nearly every byte is
# skipped. What is left is reading, UTF-8 and JSON validation, de-duplication and output.
floor=$(mktemp -d)
trap 'rm -rf "$floor"' EXIT
cat > "$floor/iam_user_deleted.yml" <<'YAML'
title: IAM user deleted
id: 6e1d6f0a-5d0c-4c47-9a4e-3c1f1d2b7a10
status: test
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventSource: iam.amazonaws.com
    eventName: DeleteUser
  condition: selection
level: low
YAML
m_tw1=$(best_times taskset -c 0 "$tw" replay --quiet --threads 1 --rules "$floor" --emit hits --output /dev/null "$events")
m_rs1=$(best_times taskset -c 0 "$rsigma" engine eval -r "$floor" -e "@$events")
read -r t_tw1 c_tw1 <<<"$m_tw1"
read -r t_rs1 c_rs1 <<<"$m_rs1"

rate() { echo "$n / $1" | bc -l | xargs printf '%.0f'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
secs() { printf '%.3f' "$1"; }

echo "## Replay throughput ($n events, $(( $(stat -c %s "$events") / 1000000 )) MB, one core, best of $RUNS)"
echo
echo "Wall time, and CPU time (user + system), each the least of the same $RUNS runs."
echo
echo "| program | rules | wall (s) | events/s | CPU (s) | trailwatch is (wall / CPU) |"
echo "|---|---|---|---|---|---|"
echo "| trailwatch$build replay --emit hits | $(ls "$RULES"/*.yml | wc -l) | $(secs "$t_tw") | $(rate "$t_tw") | $(secs "$c_tw") | |"
echo "| rsigma $RSIGMA engine eval | same | $(secs "$t_rs") | $(rate "$t_rs") | $(secs "$c_rs") | $(ratio "$t_rs" "$t_tw")× / $(ratio "$c_rs" "$c_tw")× faster |"
echo "| serde_json::Value parse only | none | $(secs "$t_pb") | $(rate "$t_pb") | $(secs "$c_pb") | $(ratio "$t_pb" "$t_tw")× / $(ratio "$c_pb" "$c_tw")× faster |"
echo "| trailwatch$build replay --emit hits | 1 (eventSource, eventName) | $(secs "$t_tw1") | $(rate "$t_tw1") | $(secs "$c_tw1") | |"
echo "| rsigma $RSIGMA engine eval | the same 1 | $(secs "$t_rs1") | $(rate "$t_rs1") | $(secs "$c_rs1") | $(ratio "$t_rs1" "$t_tw1")× / $(ratio "$c_rs1" "$c_tw1")× faster |"

# Every core: the same file, one thread against one per core (state stays on one thread, in
# input order, so the output must not change: checked here too).
cores=$(nproc)
t_all=$(best "$tw" replay --quiet --rules "$RULES" --emit hits --output /dev/null "$events")
t_rs_all=$(best "$rsigma" engine eval -r "$RULES" -e "@$events")
t_a1=$(best taskset -c 0 "$tw" replay --quiet --threads 1 --rules rules --output /dev/null "$events")
t_aall=$(best "$tw" replay --quiet --rules rules --output /dev/null "$events")
"$tw" replay --quiet --threads 1 --rules "$RULES" --emit hits --output "$dir/hits-1.jsonl" "$events"
"$tw" replay --quiet --rules "$RULES" --emit hits --output "$dir/hits-all.jsonl" "$events"
cmp -s "$dir/hits-1.jsonl" "$dir/hits-all.jsonl" || { echo "threads changed the output" >&2; exit 1; }
# The same events as CloudTrail log files (gzip, S3 layout; about 40,000 of 5 records each).
trail=$dir/trail-200k
[ -d "$trail" ] || "$lt" generate --events 200000 --seed 42 --format s3 --output "$trail" >&2
t_l1=$(best taskset -c 0 "$tw" replay --quiet --threads 1 --rules "$RULES" --emit hits --output /dev/null "$trail")
t_lall=$(best "$tw" replay --quiet --rules "$RULES" --emit hits --output /dev/null "$trail")
"$tw" replay --quiet --rules "$RULES" --emit hits --output "$dir/hits-logs.jsonl" "$trail"
# The same (rule, event) hits; read in the order of the files' times, and named by file and line.
pairs() { sed -E 's/.*"rule_id":"([^"]*)".*"event_id":"([^"]*)".*/\1 \2/' "$1" | sort; }
cmp -s <(pairs "$dir/hits-1.jsonl") <(pairs "$dir/hits-logs.jsonl") || { echo "log files gave other hits than JSON lines" >&2; exit 1; }
echo
echo "## Every core ($cores; one thread pinned to one core against one per core, best of $RUNS)"
echo
echo "| program | one core (s) | $cores cores (s) | speed-up |"
echo "|---|---|---|---|"
echo "| trailwatch replay --emit hits (sigma rules) | $(printf '%.3f' "$t_tw") | $(printf '%.3f' "$t_all") | $(ratio "$t_tw" "$t_all")× |"
echo "| trailwatch replay --emit hits, $(find "$trail" -type f | wc -l) log files | $(printf '%.3f' "$t_l1") | $(printf '%.3f' "$t_lall") | $(ratio "$t_l1" "$t_lall")× |"
echo "| trailwatch replay, alerts (shipped pack) | $(printf '%.3f' "$t_a1") | $(printf '%.3f' "$t_aall") | $(ratio "$t_a1" "$t_aall")× |"
echo "| rsigma $RSIGMA engine eval | $(printf '%.3f' "$t_rs") | $(printf '%.3f' "$t_rs_all") | $(ratio "$t_rs" "$t_rs_all")× |"
echo
echo "## Peak RSS of replay as the input grows"
echo
echo "| events | MB | peak RSS (MiB) |"
echo "|---|---|---|"
for k in 50000 200000 800000; do
  f=$dir/events-$k.jsonl
  [ -s "$f" ] || "$lt" generate --events "$k" --seed 42 --output "$f"
  rss=$(/usr/bin/time -f '%M' "$tw" replay --quiet --rules "$RULES" --emit hits --output /dev/null "$f" 2>&1 >/dev/null | tail -1)
  echo "| $k | $(du -m "$f" | cut -f1) | $(echo "$rss / 1024" | bc -l | xargs printf '%.1f') |"
done

# The distinct-keys input of N failed sign-ins (one user each), generated once.
keys_file() {
  local f=$dir/keys-$1.jsonl
  [ -s "$f" ] || "$lt" distinct-keys --count "$1" --output "$f"
  echo "$f"
}
# Peak RSS (KiB) of a replay of FILE with the failed sign-in rule and the rule folders given.
state_rss() {
  local f=$1; shift
  local rules=(--rules rules/cis/06_console_authentication_failures.yml)
  for r in "$@"; do rules+=(--rules "$r"); done
  /usr/bin/time -f "%M" "$tw" replay --quiet "${rules[@]}" --emit hits --max-keys 2000000 --output /dev/null "$f" 2>&1 >/dev/null | tail -1
}
mib() { echo "$1 / 1024" | bc -l | xargs printf '%.1f'; }

echo
echo "## Correlation state: peak RSS against live group keys (5 m lateness)"
echo
# rsigma on the same input and rules (the failed sign-in rule and the correlation, one folder).
rsigma_rules=$(mktemp -d)
trap 'rm -rf "$floor" "$rsigma_rules"' EXIT
cp rules/cis/06_console_authentication_failures.yml load-test/rules/*.yml "$rsigma_rules"/
echo "| live group keys | trailwatch peak RSS (MiB) | rsigma $RSIGMA peak RSS (MiB) |"
echo "|---|---|---|"
for k in 250000 1000000; do
  f=$(keys_file "$k")
  rs=$(/usr/bin/time -f "%M" "$rsigma" engine eval -r "$rsigma_rules" -e "@$f" --max-state-entries 2000000 2>&1 >/dev/null | tail -1)
  echo "| $k | $(mib "$(state_rss "$f" load-test/rules)") | $(mib "$rs") |"
done

echo
echo "## First-seen state: peak RSS against live combinations"
echo
echo "| combinations | without the rule (MiB) | with it (MiB) | bytes a combination |"
echo "|---|---|---|---|"
for k in 250000 1000000; do
  f=$(keys_file "$k")
  base=$(state_rss "$f")
  with=$(state_rss "$f" load-test/first-seen)
  echo "| $k | $(mib "$base") | $(mib "$with") | $(echo "($with - $base) * 1024 / $k" | bc) |"
done

echo
echo "## Live path: CPU per event in \`run\` on Kafka (tansu) against replay's"
echo
echo "librdkafka's default fetch wait (500 ms), then the 10 ms that event-to-alert latency needs"
echo "against tansu (which sleeps through half of a fetch's wait; a Kafka broker answers as data"
echo "arrives): the two halves of issue 16's target 4 ask for opposite settings here."
echo
TW="$tw" NO_BUILD=1 FETCH_WAIT_MS=500 RATES="1000 5000" scripts/bench-live-cpu.sh
echo
TW="$tw" NO_BUILD=1 FETCH_WAIT_MS=10 RATES=1000 scripts/bench-live-cpu.sh
echo
echo "## Live path: CPU per event in \`run\` on SQS (moto's server) against replay's"
echo
echo "moto's server takes about 90 events/s here, so batches hold a few messages and each batch"
echo "costs one receive and one delete request (docs/PERFORMANCE.md: why 2x replay is out of reach);"
echo "the tables after it are what those requests cost through the AWS SDK (load-test sqs-cost)."
echo
TW="$tw" NO_BUILD=1 TRANSPORT=sqs EVENTS=2000 RATES="50" scripts/bench-live-cpu.sh
