"""Client helpers shared by the tests. Every client call has a timeout, so a broker bug fails a
test instead of hanging it."""

import logging
import struct
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CALL_TIMEOUT_S = 15


def skip_or_fail(feature, reason):
    """A test that cannot run here: a visible skip, or a failure when `STRATA_REQUIRE` (set by
    scripts/test-all to what this machine supports) names the feature."""
    import os
    import pytest
    required = [f.strip() for f in os.environ.get("STRATA_REQUIRE", "").split(",")]
    if feature in required:
        pytest.fail(f"{feature} is required on this machine (STRATA_REQUIRE) but unavailable: {reason}")
    pytest.skip(f"{feature} unavailable: {reason}")

# librdkafka's own log lines go to Python logging (captured by pytest, shown with a failing test)
# instead of straight to stderr, where a client left over from a test could print them late.
RDKAFKA_LOG = logging.getLogger("rdkafka")


def unique_topic(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10000, "logger": RDKAFKA_LOG})


def create_topic(broker, name=None, partitions=1, config=None) -> str:
    name = name or unique_topic()
    a = admin(broker)  # keep a reference: a destroyed handle fails its pending futures
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=CALL_TIMEOUT_S,
    )
    fs[name].result(timeout=CALL_TIMEOUT_S)
    return name


def producer(broker, **conf) -> Producer:
    base = {
        "bootstrap.servers": broker.bootstrap,
        "message.timeout.ms": 15000,
        "socket.timeout.ms": 10000,
        "linger.ms": 5,
        "logger": RDKAFKA_LOG,
    }
    base.update(conf)
    return Producer(base)


class Deliveries:
    """Delivery-report collector: `ok` holds (topic, partition, offset, key, value, timestamp)."""

    def __init__(self):
        self.ok = []
        self.errors = []

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append((err, msg.key(), msg.value()))
        else:
            self.ok.append((msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()))


def produce_all(p: Producer, topic: str, messages, timeout=CALL_TIMEOUT_S) -> Deliveries:
    """Produces dicts of Producer.produce kwargs, flushes, asserts every one was acknowledged."""
    d = Deliveries()
    for m in messages:
        p.produce(topic, on_delivery=d, **m)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} messages not delivered within {timeout}s"
    assert not d.errors, f"delivery errors: {d.errors[:5]}"
    return d


def consumer(broker, **conf) -> Consumer:
    base = {
        "bootstrap.servers": broker.bootstrap,
        # Groups are not implemented: assign manually and never commit.
        "group.id": "strata-client-tests",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "socket.timeout.ms": 10000,
        "fetch.wait.max.ms": 100,
        "logger": RDKAFKA_LOG,
    }
    base.update(conf)
    return Consumer(base)


def consume(broker, topic, n, partitions=(0,), offset=0, timeout=CALL_TIMEOUT_S, c=None, **conf):
    """Reads `n` messages from `partitions` starting at `offset`; returns the Message objects.
    Fails on any consumer error other than partition EOF, or if fewer than `n` arrive in time."""
    own = c is None
    if own:
        c = consumer(broker, **conf)
        c.assign([TopicPartition(topic, p, offset) for p in partitions])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            out.append(m)
    finally:
        if own:
            c.close()
    assert len(out) >= n, f"read {len(out)} of {n} messages from {topic} within {timeout}s"
    return out


def watermarks(broker, topic, partition=0):
    c = consumer(broker)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=CALL_TIMEOUT_S, cached=False)
    finally:
        c.close()


def read_all(broker, topic, partitions, timeout=CALL_TIMEOUT_S):
    """Every message in each partition from its log start to its high watermark:
    {partition: [Message, ...]}."""
    out = {}
    for p in partitions:
        lo, hi = watermarks(broker, topic, p)
        out[p] = consume(broker, topic, hi - lo, partitions=(p,), offset=lo, timeout=timeout) if hi > lo else []
    return out


# --- on-disk RecordBatch v2 headers (see shared KAFKA.md: 61-byte header) -----------------------
def disk_batches(path: Path):
    """Yields (base_offset, batch_length, attributes, record_count) of each batch in a segment
    file, stopping at the first zero length / non-v2 header (preallocated tail)."""
    data = Path(path).read_bytes()
    pos = 0
    while pos + 61 <= len(data):
        base_offset, batch_len = struct.unpack_from(">qi", data, pos)
        magic = data[pos + 16]
        if batch_len <= 0 or magic != 2:
            break
        (attributes,) = struct.unpack_from(">h", data, pos + 21)
        (record_count,) = struct.unpack_from(">i", data, pos + 57)
        yield base_offset, batch_len, attributes, record_count
        pos += 12 + batch_len
