#!/usr/bin/env python3
"""Prints the PERFORMANCE.md matrix table rows from the JSON that `matrix-run.sh` wrote.

Usage: docs/perf/matrix-table.py embedded|kafka DIR
Medians of the 3 runs; per-run ratios against each run's own `--baseline`.
"""
import json
import statistics
import sys

ROWS = [
    ("base", "base (1 KiB, never, random, none, 1 producer)"),
    ("16k", "16 KiB messages, 64 per batch"),
    ("always", "`fsync always`"),
    ("interval", "`fsync interval:100`"),
    ("text-none", "text payload, none"),
    ("text-zstd", "text payload, zstd"),
    ("p4", "4 producers"),
    ("p8", "8 producers"),
]


def num(x):
    return f"{round(x):,}".replace(",", " ")


def main():
    mode, d = sys.argv[1], sys.argv[2]
    for key, label in ROWS:
        runs = [json.load(open(f"{d}/{key}-{i}.json")) for i in (1, 2, 3)]
        prod = [r["produce"]["mb_per_s"] for r in runs]
        cons = [r["consume"]["mb_per_s"] for r in runs]
        bw = [r["baseline"]["write_mb_per_s"] for r in runs]
        br = [r["baseline"]["read_mb_per_s"] for r in runs]
        lat = [r["produce"]["latency_us"] for r in runs]
        med = statistics.median
        if key == "text-zstd":
            ratio = med(r["compression_ratio"] for r in runs)
            label = f"{label} ({ratio:.2f}x smaller on disk)"
        cells = [
            label,
            f"**{num(med(prod))}** ({', '.join(num(p) for p in prod)})",
            num(med(bw)),
            ", ".join(f"{p / b:.2f}" for p, b in zip(prod, bw)),
            " / ".join(num(med(l[k] for l in lat)) for k in ("p50", "p99", "p999")),
            num(med(cons)),
            num(med(br)),
        ]
        if mode == "embedded":
            cells.append(", ".join(f"{c / b:.1f}" for c, b in zip(cons, br)))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
