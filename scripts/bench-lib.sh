# Sourced by the bench scripts: moto's server on 127.0.0.1 and best-of-N timing.

# Installs moto's server under target/ once, with the same extras as scripts/test.sh, so
# whichever script runs first leaves a server every other script can use.
moto_install() {
  MOTO_VENV=target/moto-venv
  if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install --quiet 'moto[sqs,sns,s3]' flask flask-cors >&2
  fi
}

# start_moto PORT LOG: starts moto on 127.0.0.1:PORT and waits until it answers; its pid is
# MOTO_PID (the caller's trap kills it).
start_moto() {
  moto_install
  "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$1" > "$2" 2>&1 &
  MOTO_PID=$!
  moto_ready "$1" "$2"
}

# moto_ready PORT LOG: waits until the moto just started on PORT answers (its log is LOG).
moto_ready() {
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$1/moto-api/" >/dev/null && return 0; sleep 0.2; done
  echo "error: moto did not start on port $1 ($2)" >&2
  return 1
}

# start_moto_keepalive PORT LOG: as start_moto, but served by waitress, which keeps connections
# open between requests as AWS endpoints do (scripts/moto-keepalive.py; waitress is installed
# into moto's environment the first time).
start_moto_keepalive() {
  moto_install
  "$MOTO_VENV/bin/python" -c 'import waitress' 2>/dev/null ||
    "$MOTO_VENV/bin/pip" install --quiet waitress >&2
  "$MOTO_VENV/bin/python" scripts/moto-keepalive.py "$1" > "$2" 2>&1 &
  MOTO_PID=$!
  moto_ready "$1" "$2"
}

# best_times CMD...: the least wall time and the least CPU time (user + system) of CMD over
# $RUNS runs, in seconds to the millisecond, as "WALL CPU" (output discarded). On a shared
# virtual machine wall time also counts the time others held the core; CPU time does not.
best_times() {
  local bw="" bc="" t w c
  for _ in $(seq "$RUNS"); do
    t=$( { TIMEFORMAT='%3R %3U %3S'; time "$@" >/dev/null 2>&1; } 2>&1 ) || { echo "error: failed: $*" >&2; exit 1; }
    read -r w c <<<"$(echo "$t" | awk '{print $1, $2 + $3}')"
    if [ -z "$bw" ] || [ "$(echo "$w < $bw" | bc -l)" = 1 ]; then bw=$w; fi
    if [ -z "$bc" ] || [ "$(echo "$c < $bc" | bc -l)" = 1 ]; then bc=$c; fi
  done
  echo "$bw $bc"
}

# best CMD...: the least wall time in seconds of CMD over $RUNS runs (output discarded).
best() {
  local t
  t=$(best_times "$@") || exit 1
  echo "${t%% *}"
}

# kafka_source BROKERS TOPIC GROUP [FETCH_WAIT_MS]: the [source.kafka] section of a trailwatch
# configuration, its state topic named after the group, with librdkafka's fetch wait when given
# (tansu answers a fetch only after sleeping half its max wait, even with data ready).
kafka_source() {
  cat <<TOML
[source.kafka]
brokers = "$1"
topic = "$2"
group_id = "$3"
state_topic = "$3-state"
TOML
  if [ -n "${4:-}" ]; then
    printf '[source.kafka.properties]\n"fetch.wait.max.ms" = "%s"\n' "$4"
  fi
}

# start_tansu PORT DIR: builds tansu once (skipped when installed), starts it on 127.0.0.1:PORT
# with its SQLite store in DIR, and waits until it is ready; its pid is TANSU_PID (the caller's
# trap kills it).
start_tansu() {
  local bin
  bin=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
  [ -x "$bin" ] || cargo install tansu --locked --no-default-features --features libsql >&2
  (cd "$2" && exec "$bin" broker --listener-url "tcp://127.0.0.1:$1" \
    --advertised-listener-url "tcp://127.0.0.1:$1" --storage-engine sqlite://tansu.db) \
    > "$2/tansu.log" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 50); do grep -q "ready in" "$2/tansu.log" && return 0; sleep 0.2; done
  echo "error: tansu did not start on port $1 ($2/tansu.log)" >&2
  return 1
}

# kafka_bench PORT: a work directory `work` (removed on exit, after every pid in `pids` and
# `twpid` is killed), tansu started in it on 127.0.0.1:PORT (`brokers`), and an HMAC key in
# "$work/hmac.key".
kafka_bench() {
  work=$(mktemp -d)
  pids=()
  trap 'kill "${pids[@]}" ${twpid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
  start_tansu "$1" "$work"
  pids+=("$TANSU_PID")
  brokers="127.0.0.1:$1"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/hmac.key"
}

# cpu_seconds PID: CPU time a process has used so far, every thread (utime + stime).
cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

# cpu_ns PID: CPU time the process's live threads have run so far, in nanoseconds (the
# scheduler's own account, /proc/PID/task/*/schedstat): cpu_seconds counts in clock ticks of
# 10 ms, a tenth of what a live run of 10 s spends at 1,000 events/s. A thread that ends between
# two readings takes its time with it; the runtime keeps its threads for 10 s after their last
# task, longer than these readings are apart.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'; }

# events_total HOST:PORT: trailwatch_events_total on a run's metrics endpoint.
events_total() { curl -sf "http://$1/metrics" | awk '$1=="trailwatch_events_total"{print $2}'; }
