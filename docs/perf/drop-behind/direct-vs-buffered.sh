#!/bin/bash
# fio O_DIRECT vs fio buffered (end_fsync) vs the engine (plain, never), 2 GiB each, alternating.
D=${DATA:-/tmp/strata-perf-data}; O=${OUT:-/tmp/direct-vs-buffered}; S=${STRATA:-target/release/strata}; mkdir -p "$O"
for i in $(seq 1 ${N:-8}); do
  line="iter $i"
  for d in 1 0; do
    sync; sleep 2
    fio --name=seqwrite --ioengine=psync --direct=$d --end_fsync=1 --bs=1M --rw=write --size=2G --filename=$D/fio.tmp --output-format=json > $O/fio-d$d-$i.json; rm -f $D/fio.tmp
    line="$line | direct=$d $(python3 -c "import json; j=json.load(open('$O/fio-d$d-$i.json'))['jobs'][0]; print(round(j['write']['bw_bytes']/1e6), 'sys%', round(j['sys_cpu']))")"
  done
  rm -rf $D/bench; sync; sleep 2
  $S bench --data-dir $D/bench --total 2GiB --fsync never --phases produce --io-backend plain --json 2>/dev/null > $O/engine-$i.json
  line="$line | engine $(python3 -c "import json; j=json.load(open('$O/engine-$i.json')); print(round(j['produce']['mb_per_s']), 'cpu', round(j['load_generator_cpu_seconds'],2))")"
  echo "$line"
done
rm -rf $D/bench
