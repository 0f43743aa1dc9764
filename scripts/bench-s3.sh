#!/usr/bin/env bash
# S3 replay throughput (docs/PERFORMANCE.md): the same CloudTrail log files replayed from moto's
# S3 on 127.0.0.1 and from the local disk, best of N runs each, with a listing of the whole
# bucket and a one-day selection. Prints a markdown report on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
EVENTS=${EVENTS:-200000}
RUNS=${RUNS:-3}
PORT=${MOTO_PORT:-5078}
RULES=${RULES:-../shared/corpus/sigma-cloudtrail}

cargo build --release --locked -p trailwatch -p load-test >&2
work=$(mktemp -d)
trap 'kill ${MOTO_PID:-} 2>/dev/null || true; rm -rf "$work"' EXIT
start_moto "$PORT" "$work/moto.log"
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true

trail=$work/trail
# Two events a second: EVENTS=200000 is about 28 hours over 3 accounts and 4 regions.
target/release/load-test generate --events "$EVENTS" --seed 42 --format s3 --output "$trail" >&2
"$MOTO_VENV/bin/python" - "$trail" <<'PY' >&2
import boto3, os, sys
from concurrent.futures import ThreadPoolExecutor
root = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
s3.create_bucket(Bucket="bench")
paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
def put(p):
    s3.upload_file(p, "bench", os.path.relpath(p, root))
with ThreadPoolExecutor(8) as pool:
    list(pool.map(put, paths))
print(f"uploaded {len(paths)} objects", file=sys.stderr)
PY
files=$(find "$trail" -type f | wc -l)
mb=$(du -sm "$trail" | cut -f1)
first=$(find "$trail" -path '*/CloudTrail/*' -type d -regex '.*/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]' | sort -t/ -k1 | head -1)
day=$(echo "$first" | grep -oE '[0-9]{4}/[0-9]{2}/[0-9]{2}$' | tr / -)

replay() { target/release/trailwatch replay --quiet --rules "$RULES" --emit hits --output /dev/null "$@"; }
rate() { echo "$EVENTS / $1" | bc -l | xargs printf '%.0f'; }

t_local=$(best replay "$trail")
t_s3=$(best replay s3://bench/)
next=$(date -u -d "$day + 1 day" +%F)
# trailwatch's own CPU time over an S3 replay: what is left of the wall time is the store's.
/usr/bin/time -o "$work/cpu" -f '%U %S' target/release/trailwatch replay --quiet --rules "$RULES" --emit hits --output /dev/null s3://bench/ >/dev/null 2>&1
cpu_s3=$(awk '{print $1 + $2}' "$work/cpu")
t_local_day=$(best replay --since "$day" --until "$next" "$trail")
t_s3_day=$(best replay --since "$day" --until "$next" s3://bench/)

echo "## S3 replay ($EVENTS events in $files log files, $mb MB gzipped, $(ls "$RULES"/*.yml | wc -l) rules, best of $RUNS)"
echo
echo "| source | seconds | events/s | S3 takes |"
echo "|---|---|---|---|"
echo "| local files, whole trail | $(printf '%.3f' "$t_local") | $(rate "$t_local") | |"
echo "| moto S3, whole bucket | $(printf '%.3f' "$t_s3") | $(rate "$t_s3") | $(echo "$t_s3 / $t_local" | bc -l | xargs printf '%.2f')× |"
echo "| local files, --since $day --until $next | $(printf '%.3f' "$t_local_day") | | |"
echo "| moto S3, --since $day --until $next | $(printf '%.3f' "$t_s3_day") | | $(echo "$t_s3_day / $t_local_day" | bc -l | xargs printf '%.2f')× |"
echo
echo "trailwatch's CPU time (user + system) over one whole-bucket S3 replay: ${cpu_s3} s."
