#!/usr/bin/env bash
# Builds fuzz/corpus/<target>/ from ../shared/corpus and the repo, at run time (nothing of the
# third-party corpus is committed). Usage: fuzz/seed.sh   (from the project root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$root/../shared/corpus"
out="$root/fuzz/corpus"
[ -d "$shared" ] || { echo "missing $shared" >&2; exit 1; }
mkdir -p "$out"/{event_decode,rule_compile,config_load,state_restore,correlation_restore}

# Events: one file per line of every events.jsonl, plus the EventBridge envelopes.
for set in panther stratus eventbridge; do
  split -l 1 -d -a 4 "$shared/$set/events.jsonl" "$out/event_decode/$set-"
done

# Rules: SigmaHQ's, the correlation examples and the shipped pack.
cp "$shared"/sigma-cloudtrail/*.yml "$shared"/sigma-correlation-examples/*.yml "$out/rule_compile/"
find "$root/rules" -name '*.yml' -exec cp {} "$out/rule_compile/" \;

# Configuration: the systemd example.
cp "$root/ops/systemd/trailwatch.toml" "$out/config_load/"

# States: replay the corpus with --state, one state per event set, and their correlation bodies.
bin="$root/target/debug/trailwatch"
[ -x "$bin" ] || (cd "$root" && cargo build -p trailwatch --bin trailwatch)
for set in panther stratus; do
  "$bin" replay --rules "$root/rules" --state "$out/state_restore/$set.state" \
    "$shared/$set/events.jsonl" > /dev/null 2>&1 || true
done
python3 - "$out" <<'PY'
import sys, pathlib
out = pathlib.Path(sys.argv[1])
for f in (out / "state_restore").glob("*.state"):
    b = f.read_bytes()
    head, _, body = b.partition(b"\n")
    parts = head.split(b" ")
    if parts[0] == b"TRAILWATCH-PIPELINE":
        c = int(parts[3])
        corr = body[:c]
    else:
        corr = b
    (out / "correlation_restore" / (f.stem + ".json")).write_bytes(corr.partition(b"\n")[2])
PY
echo "seeded $out"
