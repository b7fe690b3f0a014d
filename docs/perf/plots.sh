#!/bin/bash
# Redraws every plot PERFORMANCE.md links, with its .hgrm files and text table, one run each.
# Run from the workspace root after `cargo build --release`, with nothing else using the disk.
# Usage: DATA=/tmp/strata-perf-data docs/perf/plots.sh
set -euo pipefail
S=${STRATA:-target/release/strata}; D=${DATA:-/tmp/strata-perf-data}; P=docs/perf
mkdir -p "$D"
run() { # $1 = name, rest = bench args; writes $P/$1.svg, $P/<hgrm dir>/ and $P/$1.txt
  local name=$1 hgrm=$2; shift 2
  rm -rf "$D/bench" "${P:?}/$hgrm"; sync; sleep 2
  "$S" bench --data-dir "$D/bench" --plot "$P/$name.svg" --hgrm "$P/$hgrm" "$@" > "$P/$name.txt"
  echo "$name done $(date +%T)"
}
run never-1k hgrm/never-1k --total 512MiB --fsync never --baseline
run always-8p hgrm/always-8p --total 512MiB --fsync always --producers 8 --baseline
run e2e-always-50MBps hgrm/e2e-always-50MBps --total 256MiB --fsync always --rate 50 --phases e2e
K="--mode kafka --spawn-broker --acks 1 --fsync never"
run kafka-1p kafka-1p-hgrm $K --total 2GiB --producers 1 --phases produce,consume --baseline
run kafka-8p kafka-8p-hgrm $K --total 2GiB --producers 8 --phases produce,consume --baseline
run kafka-e2e kafka-e2e-hgrm $K --total 512MiB --phases e2e
rm -rf "$D/bench"
