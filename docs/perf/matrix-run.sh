#!/bin/bash
# The PERFORMANCE.md matrices: one setting varied at a time from a base configuration, 3 runs
# each, every run with --baseline (raw O_DIRECT io_uring write/read of the same volume, same dir,
# same run). Run from the repository root after `cargo build --release`.
#
#   docs/perf/matrix-run.sh embedded   # engine in-process, 1 GiB, timed until on disk
#   docs/perf/matrix-run.sh kafka      # over the wire, 512 MiB, the bench starts its own broker
set -u
MODE=${1:?usage: matrix-run.sh embedded|kafka}
case $MODE in
  embedded) TARGET="--mode embedded --total 1GiB" ;;
  kafka) TARGET="--mode kafka --spawn-broker --total 512MiB" ;;
  *) echo "unknown mode $MODE (embedded or kafka)" >&2; exit 2 ;;
esac
S=${STRATA:-target/release/strata}; D=/tmp/strata-perf-data; O=${OUT:-/tmp/strata-$MODE-matrix}
mkdir -p $D $O
BASE="$TARGET --data-dir $D/bench --acks 1 --phases produce,consume --baseline --json"
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
