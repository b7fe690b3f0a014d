"""Retention, long-poll, size limits and broker-side re-compression, seen through real clients."""

import os
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

from helpers import (CALL_TIMEOUT_S, Deliveries, consume, consumer, create_topic, disk_batches, produce_all,
                     producer, watermarks)


def log_files(broker, topic, partition=0):
    return sorted(broker.partition_dir(topic, partition).glob("*.log"))


def test_given_small_segments_and_retention_bytes_when_log_start_moves_then_old_offset_consumer_resets_to_new_start(broker_factory):
    b = broker_factory({"log.retention.check.interval.ms": "200"})
    topic = create_topic(b, config={"segment.bytes": "16384", "retention.bytes": "49152"})
    p = producer(b, **{"batch.size": 4096, "linger.ms": 0, "acks": "all"})
    value = os.urandom(200)
    # ~300 KB of records: about 18 segments of 16 KiB, retention keeps about 3.
    produce_all(p, topic, [dict(key=f"{i}".encode(), value=value) for i in range(1500)], timeout=30)
    produced_logs = 1500 * 200 // 16384  # segments written in all (at least)

    # Retention keeps about retention.bytes / segment.bytes = 3 segments plus the active one.
    # Wait until the log start offset has moved and then stayed put for 1 s (5 retention passes).
    deadline = time.monotonic() + 20
    lo, hi = watermarks(b, topic)
    stable_since = time.monotonic()
    while time.monotonic() < deadline and (lo == 0 or time.monotonic() - stable_since < 1.0):
        time.sleep(0.2)
        now_lo, hi = watermarks(b, topic)
        if now_lo != lo:
            lo, stable_since = now_lo, time.monotonic()
    logs_now = log_files(b, topic)
    assert lo > 0, "retention never moved the log start offset"
    assert hi == 1500
    assert len(logs_now) <= 5 < produced_logs, f"{len(logs_now)} .log files left: {[f.name for f in logs_now]}"
    assert int(logs_now[0].stem) == lo, "the log start offset is the base offset of the oldest segment kept"

    # A consumer still positioned at an old, deleted offset.
    c = consumer(b, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 5)])
        got = consume(b, topic, hi - lo, c=c, timeout=20)
        assert [m.offset() for m in got] == list(range(lo, hi)), "reset to the new log start, then in order"
        # and it keeps working for new data
        produce_all(p, topic, [dict(key=b"new", value=b"after retention")])
        tail = consume(b, topic, 1, c=c, timeout=10)
        assert [(m.offset(), m.value()) for m in tail] == [(1500, b"after retention")]
    finally:
        c.close()


def test_given_consumer_waiting_on_empty_topic_when_message_is_produced_then_the_long_poll_is_woken(broker):
    topic = create_topic(broker)
    # fetch.wait.max.ms is a minute: if the produce did not wake the parked fetch, the message
    # would arrive only when that wait ran out. Half of it is the bound, not a speed target.
    c = consumer(broker, **{"fetch.wait.max.ms": 60000, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert c.poll(1.5) is None  # the consumer is now parked in a long-poll fetch
        p = producer(broker, **{"linger.ms": 0})
        sent_at = time.monotonic()
        produce_all(p, topic, [dict(value=b"wake up")])
        m = None
        while m is None and time.monotonic() - sent_at < 30:
            m = c.poll(0.05)
        assert m is not None, "the parked fetch was not woken by the produce"
        assert not m.error() and m.value() == b"wake up"
    finally:
        c.close()


def test_given_idle_consumer_polling_empty_topic_when_3s_pass_then_its_fetches_park_instead_of_spinning(broker):
    """An idle consumer's fetch parks for fetch.wait.max.ms: over 3 s it sends a handful of
    fetches, not thousands (a fetch answered at once, every time, is a busy loop on both
    sides). Counted from librdkafka's own statistics, not from the clock or the CPU."""
    topic = create_topic(broker)
    stats = []
    c = consumer(broker, **{"fetch.wait.max.ms": 500, "fetch.min.bytes": 1, "enable.partition.eof": False,
                            "statistics.interval.ms": 1000, "stats_cb": stats.append})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        c.poll(1.0)  # connected and fetching
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            assert c.poll(0.2) is None
    finally:
        c.close()
    import json
    fetches = []
    for raw in stats:
        for b in json.loads(raw)["brokers"].values():
            if b.get("nodeid", -1) >= 0:
                fetches.append(b.get("req", {}).get("Fetch", 0))
    assert len(fetches) >= 2, f"no statistics: {stats[:1]}"
    sent = max(fetches) - min(fetches)
    # Parked for 500 ms each: about 2 per second. A spinning fetch would be thousands.
    assert 0 < sent < 100, f"{sent} fetches in about {len(fetches) - 1} s of idling: fetches do not park"


def test_given_topic_max_message_bytes_when_producing_too_large_batch_then_rejected_and_small_still_accepted(broker):
    topic = create_topic(broker, config={"max.message.bytes": "2048"})
    p = producer(broker, **{"linger.ms": 0, "acks": "all", "compression.type": "none", "retries": 0})
    d = Deliveries()

    p.produce(topic, value=os.urandom(8000), on_delivery=d)
    assert p.flush(CALL_TIMEOUT_S) == 0
    assert not d.ok and len(d.errors) == 1, (d.ok, d.errors)
    assert d.errors[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, d.errors[0][0]

    ok = produce_all(p, topic, [dict(value=b"small enough")])
    assert ok.ok[0][2] == 0, "the rejected batch took no offset"
    assert [m.value() for m in consume(broker, topic, 1)] == [b"small enough"]
    assert watermarks(broker, topic) == (0, 1)


def test_given_broker_message_max_bytes_when_producing_too_large_batch_then_rejected_and_small_still_accepted(broker_factory):
    b = broker_factory({"message.max.bytes": "4096"})
    topic = create_topic(b)  # inherits max.message.bytes from the broker
    p = producer(b, **{"linger.ms": 0, "acks": "all", "compression.type": "none", "retries": 0})
    d = Deliveries()

    p.produce(topic, value=os.urandom(10000), on_delivery=d)
    assert p.flush(CALL_TIMEOUT_S) == 0
    assert len(d.errors) == 1 and d.errors[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, (d.ok, d.errors)

    produce_all(p, topic, [dict(value=os.urandom(1000))])
    assert watermarks(b, topic) == (0, 1)


@pytest.mark.parametrize("topic_codec,producer_codec,disk_codec", [
    ("zstd", "none", 4),       # broker re-encodes to zstd
    ("none", "gzip", 0),       # broker decompresses
    ("producer", "gzip", 1),   # broker keeps the producer's codec
])
def test_given_topic_compression_type_when_producing_then_disk_batches_use_topic_codec_and_values_are_exact(
        broker, topic_codec, producer_codec, disk_codec):
    topic = create_topic(broker, config={"compression.type": topic_codec})
    text = b"the quick brown fox jumps over the lazy dog; " * 40  # ~1.8 KB, very compressible
    sent = [dict(key=f"k{i}".encode(), value=text + str(i).encode()) for i in range(200)]
    p = producer(broker, **{"compression.type": producer_codec, "linger.ms": 20, "batch.size": 1_000_000})

    produce_all(p, topic, sent)
    got = consume(broker, topic, len(sent))

    assert [(m.key(), m.value()) for m in got] == [(s["key"], s["value"]) for s in sent]
    batches = [bt for f in log_files(broker, topic) for bt in disk_batches(f)]
    assert batches, "no RecordBatch v2 found on disk"
    assert sum(bt[3] for bt in batches) == len(sent)
    assert {bt[2] & 0x7 for bt in batches} == {disk_codec}, f"codecs on disk: {[bt[2] & 7 for bt in batches]}"
    on_disk = sum(12 + bt[1] for bt in batches)
    payload = sum(len(s["value"]) for s in sent)
    if disk_codec == 0:
        assert on_disk > payload
    else:
        assert on_disk < payload / 5, f"{on_disk} bytes on disk for {payload} bytes of compressible values"
