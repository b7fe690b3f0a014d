#!/bin/bash
# Runs "$@" and prints system-wide busy CPU seconds (all but idle+iowait) over the run.
read -r _ a1 b1 c1 d1 e1 f1 g1 h1 _ < /proc/stat
"$@"
read -r _ a2 b2 c2 d2 e2 f2 g2 h2 _ < /proc/stat
hz=$(getconf CLK_TCK)
echo >&2 "busy $(( (a2+b2+c2+f2+g2+h2 - a1-b1-c1-f1-g1-h1) ))/$hz s: sys $(( c2-c1 )) irq $(( f2+g2-f1-g1 )) steal $((h2-h1)) iowait $((e2-e1))"
