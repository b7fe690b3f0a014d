#!/bin/bash
# Replay from disk: N iterations of { embedded, then kafka (spawned broker) } 2 GiB produce, then
# `--cold` (sync + evict every segment from the page cache) and consume, each next to the raw
# O_DIRECT read of the same volume in the same directory (`--baseline`). JSON into OUT; prints one
# line per run: consume MB/s, % of the raw read, fetch/read p50 and p99.9, and what stayed cached.
# Usage: OUT=docs/perf/cold-read N=3 TOTAL=2GiB docs/perf/cold-read.sh
set -u
S=${STRATA:-target/release/strata}; D=${DATA:-/tmp/strata-perf-data}; O=${OUT:-/tmp/cold-read}
N=${N:-3}; T=${TOTAL:-2GiB}
mkdir -p "$D" "$O"
for i in $(seq 1 "$N"); do
  for mode in embedded kafka; do
    extra=""; [ $mode = kafka ] && extra="--spawn-broker --acks 1"
    rm -rf "$D/bench"; sync; sleep 2
    # shellcheck disable=SC2086
    "$S" bench --mode $mode $extra --data-dir "$D/bench" --total "$T" --fsync never --baseline \
      --cold --phases produce,consume --json > "$O/$mode-$i.json" 2> "$O/$mode-$i.err"
    python3 - "$O/$mode-$i.json" "$mode" "$i" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); c = j["consume"]; l = c["latency_us"]; b = j["baseline"]
print(f"iter {sys.argv[3]} {sys.argv[2]:8} consume {c['mb_per_s']:.0f} MB/s = "
      f"{100 * c['mb_per_s'] / b['read_mb_per_s']:.0f}% of raw read {b['read_mb_per_s']:.0f} | "
      f"p50 {l['p50']:.0f} us p99.9 {l['p999'] / 1000:.1f} ms | "
      f"{j['cold']['resident_bytes']} of {j['cold']['bytes']} bytes still cached | "
      f"produce {j['produce']['mb_per_s']:.0f} MB/s (raw write {b['write_mb_per_s']:.0f})")
PY
  done
done
rm -rf "$D/bench"
