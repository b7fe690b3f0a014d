#!/bin/bash
# Over-the-wire measurements for PERFORMANCE.md ("Over the wire (kafka mode)").
set -u
S=/tmp/strata-perf-kafka/strata
D=/tmp/strata-perf-data
O=/tmp/strata-perf-kafka/out
P=/work/main/docs/perf
mkdir -p $D $O
C="--total 2GiB --message-size 1KiB --batch-size 1000 --fsync never --acks 1 --phases produce,consume --json"
for i in 1 2 3; do
  rm -rf $D/fio.tmp; fio --name=seqwrite --ioengine=io_uring --direct=1 --bs=1M --rw=write --size=2G --filename=$D/fio.tmp --output-format=json > $O/fio-$i.json; rm -f $D/fio.tmp
  for p in 1 8; do
    extra=""; [ $i = 1 ] && extra="--plot $P/kafka-${p}p.svg --hgrm $P/kafka-${p}p-hgrm"
    rm -rf $D/bench; /usr/bin/time -f "%e s wall" $S bench --mode kafka --spawn-broker --data-dir $D/bench --producers $p $C $extra > $O/kafka-${p}p-$i.json 2> $O/kafka-${p}p-$i.err
    rm -rf $D/bench; $S bench --mode embedded --data-dir $D/bench --producers $p $C > $O/emb-${p}p-$i.json 2> $O/emb-${p}p-$i.err
  done
  echo "iteration $i done $(date +%T)"
done
rm -rf $D/bench
$S bench --mode kafka --spawn-broker --data-dir $D/bench --total 512MiB --phases e2e --acks 1 --json --plot $P/kafka-e2e.svg --hgrm $P/kafka-e2e-hgrm > $O/kafka-e2e.json 2> $O/kafka-e2e.err
rm -rf $D/bench
$S bench --mode kafka --spawn-broker --data-dir $D/bench --messages 1000 --phases produce --idle 10 --json > $O/kafka-idle.json 2> $O/kafka-idle.err
rm -rf $D/bench
echo all done $(date +%T)
