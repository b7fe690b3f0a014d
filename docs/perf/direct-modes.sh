#!/bin/bash
# The two write modes side by side beyond issue 2's `never` target: over the wire (kafka mode,
# 8 producers, produce then consume), group commit (embedded, `always` against `never`, 8
# producers), and reading back what was just produced (embedded, 2 producers, produce then
# consume). N iterations of { fio, then each run in both modes }, JSON into OUT; one line per
# run.
# Usage: OUT=/tmp/direct-modes N=3 TOTAL=2GiB docs/perf/direct-modes.sh
set -u
S=${STRATA:-target/release/strata}; D=${DATA:-/tmp/strata-perf-data}; O=${OUT:-/tmp/direct-modes}
N=${N:-3}; G=${GAP:-2}; T=${TOTAL:-2GiB}; FS=${T%iB}
mkdir -p "$D" "$O"
summary() {
  python3 - "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
out = []
for phase in ("produce", "consume"):
    p = j.get(phase)
    if p:
        l = p["latency_us"]
        cpu = p.get("broker_cpu_seconds", p["cpu_seconds"])
        out.append(f"{phase} {p['mb_per_s']:.0f} MB/s p50 {l['p50']/1000:.2f} ms p99 {l['p99']/1000:.1f} ms cpu {cpu:.2f} s")
print(" | ".join(out))
PY
}
for i in $(seq 1 "$N"); do
  sync; sleep "$G"; rm -f "$D/fio.tmp"
  fio --name=seqwrite --ioengine=io_uring --direct=1 --bs=1M --rw=write --size="$FS" \
    --filename="$D/fio.tmp" --output-format=json > "$O/fio-$i.json"; rm -f "$D/fio.tmp"
  echo "iter $i fio $(python3 -c "import json; print(round(json.load(open('$O/fio-$i.json'))['jobs'][0]['write']['bw_bytes']/1e6))") MB/s"
  for mode in buffered direct; do
    for run in "kafka-8p:--mode kafka --spawn-broker --producers 8 --acks 1 --fsync never --phases produce,consume" \
               "never-8p:--mode embedded --producers 8 --fsync never --phases produce" \
               "always-8p:--mode embedded --producers 8 --fsync always --phases produce" \
               "readback-2p:--mode embedded --producers 2 --fsync never --phases produce,consume"; do
      name=${run%%:*}; args=${run#*:}
      out="$O/$name-$mode-$i.json"
      rm -rf "$D/bench"; sync; sleep "$G"
      # shellcheck disable=SC2086
      "$S" bench --data-dir "$D/bench" --total "$T" --write-mode "$mode" $args --json > "$out" 2> "${out%.json}.err"
      echo "  $name $mode: $(summary "$out")"
    done
  done
done
rm -rf "$D/bench"
