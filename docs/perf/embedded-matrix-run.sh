#!/bin/bash
# Embedded matrix: one dimension varied at a time from the base config, 3 runs each,
# each run with --baseline (raw O_DIRECT io_uring write/read of the same volume, same dir, same run).
set -u
S=${STRATA:-target/release/strata}; D=/tmp/strata-perf-data; O=${OUT:-/tmp/strata-embedded-matrix}
mkdir -p $D $O
BASE="--mode embedded --data-dir $D/bench --total 1GiB --acks 1 --phases produce,consume --baseline --json"
declare -A CFG=(
  [base]="--batch-size 1000 --message-size 1KiB --fsync never --payload random --compression none --producers 1"
  [16k]="--message-size 16KiB --batch-size 64 --fsync never --payload random --compression none --producers 1"
  [always]="--batch-size 1000 --message-size 1KiB --fsync always --payload random --compression none --producers 1"
  [interval]="--batch-size 1000 --message-size 1KiB --fsync interval:100 --payload random --compression none --producers 1"
  [text-none]="--batch-size 1000 --message-size 1KiB --fsync never --payload text --compression none --producers 1"
  [text-zstd]="--batch-size 1000 --message-size 1KiB --fsync never --payload text --compression zstd --producers 1"
  [p4]="--batch-size 1000 --message-size 1KiB --fsync never --payload random --compression none --producers 4"
  [p8]="--batch-size 1000 --message-size 1KiB --fsync never --payload random --compression none --producers 8"
)
for i in 1 2 3; do
  for k in base 16k always interval text-none text-zstd p4 p8; do
    rm -rf $D/bench
    $S bench $BASE ${CFG[$k]} > $O/$k-$i.json 2> $O/$k-$i.err || echo "FAILED $k $i"
  done
  echo "iteration $i done $(date +%T)"
done
rm -rf $D/bench
