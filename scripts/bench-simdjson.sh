#!/usr/bin/env bash
# What the fastest JSON parsers take on the benchmark's file, one core: simdjson's validating
# DOM parse of every line, and its On-Demand front end reading eventSource and eventName only
# (which checks UTF-8 and that strings close, not the grammar of what it skips). A yardstick for docs/PERFORMANCE.md's "what 10×
# would take": neither matches rules, so each is a floor under any detector built on it.
# Installs Debian's libsimdjson-dev when missing. Prints a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
RUNS=${RUNS:-5}
events=${1:-target/bench/events-200k.jsonl}
[ -s "$events" ] || { echo "error: $events missing (scripts/bench.sh generates it)" >&2; exit 1; }

if [ ! -f /usr/include/simdjson.h ]; then
  echo "== installing libsimdjson-dev" >&2
  apt-get install -y -qq libsimdjson-dev >&2
fi
bin=target/bench/simdjson-baseline
mkdir -p target/bench
src=$(mktemp --suffix=.cpp)
trap 'rm -f "$src"' EXIT
cat > "$src" <<'CPP'
// Parses each line of a JSON-lines file: `dom` validates all of it, `ondemand` reads two
// fields. Prints the lines parsed, the errors and a checksum, so no work is optimised away.
#include <simdjson.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>

int main(int argc, char **argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: %s dom|ondemand FILE\n", argv[0]); return 2; }
  bool dom = std::strcmp(argv[1], "dom") == 0;
  simdjson::padded_string text;
  if (simdjson::padded_string::load(argv[2]).get(text)) { std::perror(argv[2]); return 1; }
  auto t0 = std::chrono::steady_clock::now();
  const char *p = text.data(), *end = p + text.size();
  size_t lines = 0, errors = 0, sum = 0;
  simdjson::dom::parser dparser;
  simdjson::ondemand::parser oparser;
  while (p < end) {
    const char *nl = static_cast<const char *>(std::memchr(p, '\n', end - p));
    size_t len = (nl ? nl : end) - p;
    // The rest of the file (and the string's own padding) lies after each line: the padding
    // simdjson reads past a document's end is always there.
    size_t capacity = (end - p) + simdjson::SIMDJSON_PADDING;
    if (len > 0) {
      lines++;
      if (dom) {
        simdjson::dom::element doc;
        if (dparser.parse(reinterpret_cast<const uint8_t *>(p), len, false).get(doc)) errors++;
        else sum += doc.get_object().size();
      } else {
        simdjson::ondemand::document doc;
        std::string_view source, name;
        if (oparser.iterate(p, len, capacity).get(doc) ||
            doc["eventSource"].get_string().get(source) || doc["eventName"].get_string().get(name))
          errors++;
        else sum += source.size() + name.size();
      }
    }
    p += len + 1;
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu lines, %zu errors, checksum %zu, parse %.3f s\n", lines, errors, sum, s);
  return errors == 0 ? 0 : 1;
}
CPP
# Compiled again only when the program changed.
if ! cmp -s "$src" "$bin.cpp" || [ ! -x "$bin" ]; then
  g++ -O3 -march=native -std=c++17 -o "$bin" "$src" -lsimdjson
  cp "$src" "$bin.cpp"
fi

# The best of RUNS: wall time of the whole program (reading the file included) and the parse
# alone as the program times it.
measure() {
  local bw="" bp=""
  for _ in $(seq "$RUNS"); do
    local s e out w p
    s=$(date +%s.%N)
    out=$(taskset -c 0 "$bin" "$1" "$events") || { echo "error: $bin $1 failed: $out" >&2; exit 1; }
    e=$(date +%s.%N)
    w=$(echo "$e - $s" | bc -l)
    p=$(echo "$out" | sed -E 's/.*parse ([0-9.]+) s/\1/')
    if [ -z "$bw" ] || [ "$(echo "$w < $bw" | bc -l)" = 1 ]; then bw=$w; fi
    if [ -z "$bp" ] || [ "$(echo "$p < $bp" | bc -l)" = 1 ]; then bp=$p; fi
  done
  echo "$bw $bp $(echo "$out" | sed -E 's/, parse.*//')"
}
# Assigned first: a failure inside $(...) then stops the script (set -e), not the table.
dom=$(measure dom)
ondemand=$(measure ondemand)
read -r dw dp dinfo <<<"$dom"
read -r ow op oinfo <<<"$ondemand"
mb=$(( $(stat -c %s "$events") / 1000000 ))
echo "## simdjson $(dpkg-query -W -f='${Version}' libsimdjson-dev 2>/dev/null || echo '?') on $events ($mb MB, one core, best of $RUNS)"
echo
echo "| front end | what it checks | whole program (s) | parse alone (s) | parse GB/s | output |"
echo "|---|---|---|---|---|---|"
gbs() { echo "$(stat -c %s "$events") / $1 / 1000000000" | bc -l | xargs printf '%.2f'; }
echo "| DOM | every byte's grammar | $(printf '%.3f' "$dw") | $(printf '%.3f' "$dp") | $(gbs "$dp") | $dinfo |"
echo "| On-Demand, eventSource and eventName | what it reads, UTF-8, that strings close | $(printf '%.3f' "$ow") | $(printf '%.3f' "$op") | $(gbs "$op") | $oinfo |"
