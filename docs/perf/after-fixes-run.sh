#!/bin/bash
set -u
S=${STRATA:-target/release/strata}; D=${DATA:-/tmp/strata-perf-data}; O=${OUT:-/tmp/perf2/out}
mkdir -p $D $O
C="--total 2GiB --message-size 1KiB --batch-size 1000 --fsync never --acks 1 --phases produce,consume --json"
for i in 1 2 3; do
  rm -rf $D/fio.tmp; fio --name=seqwrite --ioengine=io_uring --direct=1 --bs=1M --rw=write --size=2G --filename=$D/fio.tmp --output-format=json > $O/fio-$i.json; rm -f $D/fio.tmp
  for p in 1 8; do
    rm -rf $D/bench; $S bench --mode kafka --spawn-broker --data-dir $D/bench --producers $p $C > $O/kafka-${p}p-$i.json 2> $O/kafka-${p}p-$i.err
    rm -rf $D/bench; $S bench --mode embedded --data-dir $D/bench --producers $p $C > $O/emb-${p}p-$i.json 2> $O/emb-${p}p-$i.err
  done
  echo "iteration $i done $(date +%T)"
done
rm -rf $D/bench
echo all done $(date +%T)
