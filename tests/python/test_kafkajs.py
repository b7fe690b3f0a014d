"""kafkajs (Node.js) against strata: admin, keyed gzip produce with an idempotent producer, a
consumer group that reads everything and commits, partitions added, configs altered, records
deleted (tests/js/smoke.mjs)."""

import shutil
import subprocess
from pathlib import Path

from helpers import skip_or_fail

JS = Path(__file__).resolve().parents[1] / "js"


def test_given_kafkajs_when_it_runs_the_everyday_and_admin_paths_then_each_checks_out(broker):
    if shutil.which("node") is None:
        skip_or_fail("node", "node is not installed (scripts/client-tests installs it)")
        return
    if not (JS / "node_modules" / "kafkajs").exists():
        skip_or_fail("node", "kafkajs is not installed (scripts/client-tests runs npm ci in tests/js)")
        return
    r = subprocess.run(["node", str(JS / "smoke.mjs"), broker.bootstrap], capture_output=True,
                       timeout=120, text=True)
    assert r.returncode == 0, f"kafkajs failed:\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "kafkajs ok" in r.stdout
