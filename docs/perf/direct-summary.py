#!/usr/bin/env python3
"""Medians and ranges of a docs/perf/direct-writes.sh run: python3 direct-summary.py OUT_DIR.

For every run configuration: MB/s and its ratio to the iteration's fio (median, range, how many
iterations reached 90%); and the same for fio run again right after fio (the noise floor)."""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]


def fio(path):
    return json.load(open(path))["jobs"][0]["write"]["bw_bytes"] / 1e6


iters = sorted(
    int(re.search(r"fio-(\d+)\.json", p).group(1)) for p in glob.glob(f"{out}/fio-*.json")
)
base = {i: fio(f"{out}/fio-{i}.json") for i in iters}
rows = {"fio again": {i: fio(f"{out}/fio2-{i}.json") for i in iters if os.path.exists(f"{out}/fio2-{i}.json")}}
for p in sorted(glob.glob(f"{out}/*-p*-*.json")):
    m = re.search(r"/([a-z]+-[a-z_]+-p\d+-f\d+(?:-c\w+)?)-(\d+)\.json$", p)
    if not m:
        continue
    rows.setdefault(m.group(1), {})[int(m.group(2))] = json.load(open(p))["produce"]["mb_per_s"]


def rng(xs, fmt):
    return f"{fmt(min(xs))}-{fmt(max(xs))}"


b = list(base.values())
print(f"fio: {len(b)} iterations, median {statistics.median(b):.0f} MB/s, range {rng(b, lambda x: f'{x:.0f}')}")
print("| run | MB/s median | MB/s range | % of the iteration's fio: median | range | iterations >= 90% |")
print("|---|---|---|---|---|---|")
for name, vals in rows.items():
    xs = [vals[i] for i in iters if i in vals]
    rs = [vals[i] * 100 / base[i] for i in iters if i in vals]
    if not xs:
        continue
    ok = sum(1 for r in rs if r >= 90)
    print(
        f"| {name} | {statistics.median(xs):.0f} | {rng(xs, lambda x: f'{x:.0f}')} | "
        f"{statistics.median(rs):.0f}% | {rng(rs, lambda x: f'{x:.0f}%')} | {ok} of {len(rs)} |"
    )
