#!/bin/bash
# Issue 2's `never` target, measured against a disk whose speed moves from minute to minute:
# N iterations of { fio over SIZE, then each backend's embedded 1-producer `never` run over the
# same volume }, every run after GAP seconds of idle disk, JSON into OUT. Prints one line per
# iteration: fio MB/s, then per backend MB/s, % of that iteration's fio, p99.9 and max latency.
# Usage: OUT=/tmp/nvf N=8 TOTAL=2GiB docs/perf/never-vs-fio.sh
set -u
S=${STRATA:-target/release/strata}; D=${DATA:-/tmp/strata-perf-data}; O=${OUT:-/tmp/never-vs-fio}
N=${N:-8}; G=${GAP:-2}; T=${TOTAL:-2GiB}; FS=${T%iB}
mkdir -p "$D" "$O"
for i in $(seq 1 "$N"); do
  sync; sleep "$G"; rm -f "$D/fio.tmp"
  fio --name=seqwrite --ioengine=io_uring --direct=1 --bs=1M --rw=write --size="$FS" \
    --filename="$D/fio.tmp" --output-format=json > "$O/fio-$i.json"; rm -f "$D/fio.tmp"
  f=$(python3 -c "import json; print(round(json.load(open('$O/fio-$i.json'))['jobs'][0]['write']['bw_bytes']/1e6))")
  line="iter $i fio $f"
  for b in io_uring plain; do
    rm -rf "$D/bench"; sync; sleep "$G"
    "$S" bench --data-dir "$D/bench" --total "$T" --fsync never --io-backend $b --phases produce \
      --json > "$O/$b-$i.json" 2> /dev/null
    r=$(python3 -c "import json; j=json.load(open('$O/$b-$i.json'))['produce']; l=j['latency_us']; print(round(j['mb_per_s']), str(round(j['mb_per_s']*100/$f))+'%', 'p99.9', round(l['p999']/1000,1), 'ms max', round(l['max']/1000), 'ms')")
    line="$line | $b $r"
  done
  echo "$line"
done
rm -rf "$D/bench"
