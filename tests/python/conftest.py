"""Fixtures for the real-client tests: start the real `strata` binary, never build it.

The binary is `$STRATA_BIN`, default `<repo>/target/debug/strata` (build it first with
`cargo build`). Each broker listens on a free loopback port (`--listen 127.0.0.1:0`; the port is
read from the `listening on 127.0.0.1:PORT` line on stdout), keeps its data in a temporary
directory and is stopped with SIGTERM at teardown, which must exit with code 0.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STRATA_BIN = Path(os.environ.get("STRATA_BIN", REPO / "target" / "debug" / "strata"))
# The client listener (a cluster node first prints "controller listening on ...").
LISTENING = re.compile(r"^listening on (127\.0\.0\.1:(\d+))", re.M)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class Broker:
    """One `strata serve` process. `restart()` starts a new process on the same data dir."""

    _seq = 0

    def __init__(self, data_dir: Path, log_dir: Path, settings: dict):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.settings = dict(settings)
        self.proc = None
        self.bootstrap = None
        self.port = None
        self.stderr_path = None
        self.stdout_path = None
        self.runs = []  # (stdout_path, stderr_path) of every process started

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        assert STRATA_BIN.exists(), f"{STRATA_BIN} not found: run `cargo build` (or set STRATA_BIN)"
        Broker._seq += 1
        tag = f"broker-{Broker._seq}"
        self.stdout_path = self.log_dir / f"{tag}.stdout"
        self.stderr_path = self.log_dir / f"{tag}.stderr"
        self.runs.append((self.stdout_path, self.stderr_path))
        cmd = [str(STRATA_BIN), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"]
        # The suite runs once per write backend and write mode (scripts/test-all sets
        # STRATA_TEST_BACKEND and STRATA_TEST_WRITE_MODE).
        backend = os.environ.get("STRATA_TEST_BACKEND")
        if backend and "strata.io.backend" not in self.settings:
            cmd += ["--set", f"strata.io.backend={backend}"]
        mode = os.environ.get("STRATA_TEST_WRITE_MODE")
        if mode and "strata.log.write.mode" not in self.settings:
            cmd += ["--set", f"strata.log.write.mode={mode}"]
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            m = LISTENING.search(self.stdout_path.read_text(errors="replace"))
            if m:
                self.bootstrap, self.port = m.group(1), int(m.group(2))
                return self
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"strata exited with {self.proc.returncode} before listening; cmd={cmd}\n"
                    f"stderr:\n{self.stderr_text()}"
                )
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"strata did not print 'listening on' within {START_TIMEOUT_S}s\n{self.stderr_text()}")
            time.sleep(0.02)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S) -> int:
        """Sends `sig` and waits; returns the exit code (negative: killed by a signal)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"strata did not exit within {timeout}s of {sig!r}\n{self.stderr_text()}")
        return self.proc.returncode

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def restart(self):
        if self.running():
            rc = self.stop()
            assert rc == 0, f"SIGTERM exit code {rc}\n{self.stderr_text()}"
        return self.start()

    # -- observation -------------------------------------------------------------------------
    def stderr_text(self, all_runs=False) -> str:
        paths = [e for _, e in self.runs] if all_runs else [self.stderr_path]
        return "".join(p.read_text(errors="replace") for p in paths if p and p.exists())

    def cpu_seconds(self) -> float:
        """User + system CPU time of the running broker, from /proc/<pid>/stat."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"


@pytest.fixture
def broker_factory(tmp_path):
    """Returns `start(settings=None, data_dir=None) -> Broker`. Every broker still running at
    teardown gets SIGTERM and must exit 0."""
    brokers = []

    def start(settings=None, data_dir=None):
        n = len(brokers)
        data = Path(data_dir) if data_dir else tmp_path / f"data{n}"
        data.mkdir(parents=True, exist_ok=True)
        logs = tmp_path / f"logs{n}"
        logs.mkdir(parents=True, exist_ok=True)
        b = Broker(data, logs, settings or {})
        brokers.append(b)
        return b.start()

    yield start

    failures = []
    for b in brokers:
        if b.running():
            rc = b.stop()
            if rc != 0:
                failures.append(f"broker on {b.bootstrap} exited {rc} after SIGTERM")
        # Shown by pytest only when the test fails.
        print(f"---- strata stderr ({b.data_dir}) ----\n{b.stderr_text(all_runs=True)[-8000:]}")
    assert not failures, "; ".join(failures)


@pytest.fixture
def broker(broker_factory):
    """One broker with default settings."""
    return broker_factory()
