#!/bin/bash
# Issue 2's `never` target with the direct write mode, against a disk whose speed moves from
# minute to minute: N iterations of
#   { fio, fio again (the disk against itself: the noise floor), then the embedded `never` runs
#     below, each after GAP seconds of idle disk }
# over TOTAL, JSON into OUT. Prints one line per iteration: both fio results, then per run
# MB/s and % of that iteration's first fio.
# Usage: OUT=/tmp/direct N=8 TOTAL=2GiB docs/perf/direct-writes.sh
set -u
S=${STRATA:-target/release/strata}; D=${DATA:-/tmp/strata-perf-data}; O=${OUT:-/tmp/direct-writes}
N=${N:-8}; G=${GAP:-2}; T=${TOTAL:-2GiB}; FS=${T%iB}
# write mode : backend : producers : appends in flight per producer [: direct cache size]
RUNS=${RUNS:-"direct:io_uring:1:4 direct:io_uring:1:2 direct:io_uring:2:1 direct:io_uring:1:1 direct:plain:1:4 direct:io_uring:1:4:32MiB buffered:io_uring:1:4 buffered:io_uring:2:1"}
mkdir -p "$D" "$O"
fio_run() {
  sync; sleep "$G"; rm -f "$D/fio.tmp"
  fio --name=seqwrite --ioengine=io_uring --direct=1 --bs=1M --rw=write --size="$FS" \
    --filename="$D/fio.tmp" --output-format=json > "$1"; rm -f "$D/fio.tmp"
  python3 -c "import json; print(round(json.load(open('$1'))['jobs'][0]['write']['bw_bytes']/1e6))"
}
for i in $(seq 1 "$N"); do
  f=$(fio_run "$O/fio-$i.json")
  f2=$(fio_run "$O/fio2-$i.json")
  line="iter $i fio $f fio-again $f2 ($(( f2 * 100 / f ))%)"
  for run in $RUNS; do
    IFS=: read -r mode backend producers inflight cache <<< "$run"
    name="$mode-$backend-p$producers-f$inflight${cache:+-c$cache}"
    out="$O/$name-$i.json"
    rm -rf "$D/bench"; sync; sleep "$G"
    "$S" bench --data-dir "$D/bench" --total "$T" --fsync never --write-mode "$mode" \
      --io-backend "$backend" --producers "$producers" --in-flight "$inflight" ${cache:+--direct-cache "$cache"} --phases produce --json > "$out" 2> /dev/null
    r=$(python3 -c "import json; j=json.load(open('$out')); p=j['produce']; print(round(p['mb_per_s']), str(round(p['mb_per_s']*100/$f))+'%', 'cpu', round(j['load_generator_cpu_seconds'],2))")
    line="$line | $name $r"
  done
  echo "$line"
done
rm -rf "$D/bench"
