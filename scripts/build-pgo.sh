#!/usr/bin/env bash
# A profile-guided release build of trailwatch: an instrumented build replays generated traffic
# (its own seed, not the benchmark's) through the shipped rule pack and the SigmaHQ rules, and
# the final build lays out and inlines code by what that run did. About 12 % faster replay than
# `cargo build --release` here (docs/PERFORMANCE.md); the same behaviour, bit for bit.
#
# Needs llvm-profdata of the LLVM major version rustc was built with (`rustc -vV`); installs
# Debian's llvm-N package when it is missing. Prints the binary's path on stdout:
# target/pgo/release/trailwatch. About 20 minutes (everything is built twice, dependencies
# included, in target/pgo-gen and target/pgo).
set -euo pipefail
cd "$(dirname "$0")/.."
RULES=${RULES:-../shared/corpus/sigma-cloudtrail}

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=""
for p in "llvm-profdata-$major" "/usr/lib/llvm-$major/bin/llvm-profdata"; do
  if command -v "$p" >/dev/null; then profdata=$(command -v "$p"); break; fi
done
if [ -z "$profdata" ]; then
  echo "== installing llvm-$major (llvm-profdata for rustc's LLVM $major)" >&2
  as_root=""
  [ "$(id -u)" = 0 ] || as_root=sudo
  ($as_root apt-get update -qq && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "llvm-$major") >&2
  profdata=/usr/lib/llvm-$major/bin/llvm-profdata
fi
[ -x "$profdata" ] || { echo "error: no llvm-profdata for LLVM $major" >&2; exit 1; }

work=$(pwd)/target/pgo-profile
rm -rf "$work" && mkdir -p "$work/raw"

echo "== instrumented build" >&2
RUSTFLAGS="-Cprofile-generate=$work/raw" \
  cargo build --release --locked -p trailwatch --target-dir target/pgo-gen >&2
# Build scripts ran instrumented too; only the replays below make the profile.
rm -f "$work"/raw/*

echo "== training run" >&2
cargo build --release --locked -p load-test >&2
events=$work/events.jsonl
target/release/load-test generate --events 50000 --seed 7 --output "$events"
gen=target/pgo-gen/release/trailwatch
"$gen" replay --quiet --threads 1 --rules rules --output /dev/null "$events"
"$gen" replay --quiet --threads 1 --rules rules --emit hits --output /dev/null "$events"
if [ -d "$RULES" ]; then
  "$gen" replay --quiet --threads 1 --rules "$RULES" --emit hits --output /dev/null "$events"
fi
"$profdata" merge -o "$work/merged.profdata" "$work/raw"

echo "== optimised build" >&2
RUSTFLAGS="-Cprofile-use=$work/merged.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --locked -p trailwatch --target-dir target/pgo >&2
echo target/pgo/release/trailwatch
