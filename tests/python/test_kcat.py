"""kcat (librdkafka from Debian) against strata."""

import shutil
import subprocess

import pytest

from helpers import create_topic, unique_topic

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (scripts/client-tests installs it)")


def kcat(*args, input=None, timeout=30):
    r = subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"kcat {args} exited {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    return r


def test_given_a_topic_when_kcat_lists_metadata_then_broker_and_topic_are_shown(broker):
    topic = create_topic(broker, partitions=2)

    out = kcat("-b", broker.bootstrap, "-L", "-m", "10").stdout.decode()

    assert f"broker 0 at {broker.bootstrap}" in out, out
    assert f'topic "{topic}" with 2 partitions' in out, out
    assert "partition 0, leader 0" in out and "partition 1, leader 0" in out, out


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_given_keyed_lines_when_kcat_produces_then_kcat_consumes_exact_keys_and_values(broker, codec):
    topic = unique_topic("kcat")
    records = [("k1", "v1"), ("key two", "value: with colon"), ("k3", "x" * 3000), ("k1", "again")]
    lines = "".join(f"{k}:{v}\n" for k, v in records).encode()
    args = ["-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-K:", "-m", "10"]
    if codec != "none":
        args += ["-z", codec]

    kcat(*args, input=lines)
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
               "-m", "10", "-f", "%o|%k|%s\n").stdout.decode()

    assert out.splitlines() == [f"{i}|{k}|{v}" for i, (k, v) in enumerate(records)]


@pytest.mark.parametrize("codec,attr", [("gzip", 1), ("snappy", 2), ("lz4", 3)])
def test_given_debians_kcat_when_it_produces_compressed_then_the_stored_batches_keep_its_codec(broker, codec, attr):
    """librdkafka 2.0.2 (Debian) picks gzip, snappy and lz4 only when the broker advertises
    Produce v0-v2 (librdkafka #4956): Strata advertises them as Kafka 4.0 does (KAFKA-18659)."""
    from helpers import disk_batches
    topic = create_topic(broker)
    lines = "".join(f"line {i} " + "x" * 200 + "\n" for i in range(50)).encode()
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-z", codec, "-m", "10", input=lines)
    seg = sorted(broker.partition_dir(topic, 0).glob("*.log"))[0]
    codecs = {a & 0x7 for (_, _, a, _) in disk_batches(seg)}
    assert codecs == {attr}, f"kcat -z {codec} stored codecs {codecs}"
