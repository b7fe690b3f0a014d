#!/usr/bin/env bash
# The measurements behind PERFORMANCE.md. Run from the workspace root after
# `cargo build --release`; writes JSON results to $OUT (default /tmp/strata-perf) and the SVG
# plots to docs/perf/. Every configuration runs 3 times; PERFORMANCE.md reports the median.
set -euo pipefail
BIN=${BIN:-./target/release/strata}
OUT=${OUT:-/tmp/strata-perf}
DATA=${DATA:-/tmp/strata-perf-data}
RUNS=${RUNS:-3}
mkdir -p "$OUT" "$DATA"

fio_run() { # $1 = tag
  rm -f "$DATA/fio.tmp"
  fio --name=seqwrite --ioengine=io_uring --direct=1 --bs=1M --rw=write --size=2G \
      --filename="$DATA/fio.tmp" --output-format=json > "$OUT/fio-$1.json"
  rm -f "$DATA/fio.tmp"
}

bench() { # $1 = tag, rest = args
  local tag=$1; shift
  rm -rf "$DATA/bench"
  "$BIN" bench --json --data-dir "$DATA/bench" "$@" > "$OUT/$tag.json"
  rm -rf "$DATA/bench"
}

for i in $(seq 1 "$RUNS"); do
  # A: 1 KiB records in ~1 MiB batches, one partition, fsync never, next to fio and --baseline.
  fio_run "A-$i"
  bench "A-never-1k-$i" --total 2GiB --message-size 1KiB --batch-size 1000 --fsync never \
    --phases produce,consume --baseline
  # B: fsync always with 8 concurrent appenders on one partition (group commit).
  bench "B-always-8p-$i" --total 2GiB --message-size 1KiB --batch-size 1000 --fsync always \
    --producers 8 --phases produce
  bench "B-never-8p-$i" --total 2GiB --message-size 1KiB --batch-size 1000 --fsync never \
    --producers 8 --phases produce
  # C: 16 KiB messages, 64 per batch (~1 MiB).
  bench "C-never-16k-$i" --total 2GiB --message-size 16KiB --batch-size 64 --fsync never \
    --phases produce,consume
  # D: text payloads, none vs zstd.
  bench "D-text-none-$i" --total 1GiB --payload text --compression none --phases produce,consume
  bench "D-text-zstd-$i" --total 1GiB --payload text --compression zstd --phases produce,consume
  # E: 1/4/8 producers, fsync always (where concurrency matters: group commit).
  for p in 1 4; do
    bench "E-always-${p}p-$i" --total 1GiB --producers "$p" --fsync always --phases produce
  done
done
