"""kafka-python (pure-Python client, idempotent producer by default in 3.x) against strata."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from helpers import CALL_TIMEOUT_S, create_topic, disk_batches, unique_topic

TIMEOUT_MS = CALL_TIMEOUT_S * 1000


def kp_producer(broker, **conf):
    return KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS,
                         max_block_ms=TIMEOUT_MS, **conf)


def kp_consume(broker, topic, n, partition=0, offset=0, timeout=CALL_TIMEOUT_S):
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=TIMEOUT_MS + 1000,
                      fetch_max_wait_ms=100, consumer_timeout_ms=1000)
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek(tp, offset)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
        assert len(out) >= n, f"kafka-python read {len(out)} of {n} within {timeout}s"
        return out
    finally:
        c.close()


def kp_admin(broker):
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS)


@pytest.mark.parametrize("codec", [None, "gzip", "lz4"])
def test_given_default_kafka_python_producer_when_sending_then_it_is_idempotent_and_consumer_reads_exact_records(broker, codec):
    topic = create_topic(broker)
    p = kp_producer(broker, compression_type=codec, linger_ms=50)
    sent = [(f"k{i}".encode(), f"value-{i}".encode() * (i % 5), [("h", str(i).encode()), ("h", b"dup")],
             1_700_000_000_000 + i) for i in range(50)]
    sent.append((None, b"", [], 1_700_000_000_100))

    futures = [p.send(topic, key=k, value=v, headers=h, timestamp_ms=ts, partition=0) for k, v, h, ts in sent]
    p.flush(timeout=CALL_TIMEOUT_S)
    metas = [f.get(timeout=CALL_TIMEOUT_S) for f in futures]
    pid = p._transaction_manager.producer_id_and_epoch.producer_id if p._transaction_manager else None
    p.close(timeout=CALL_TIMEOUT_S)

    assert p.config["enable_idempotence"] is True and pid is not None and pid >= 0, \
        "kafka-python 3.x is idempotent by default and needs a producer id from InitProducerId"
    assert [m.offset for m in metas] == list(range(len(sent)))
    got = kp_consume(broker, topic, len(sent))
    assert [(r.offset, r.key, r.value, [tuple(h) for h in r.headers], r.timestamp) for r in got] == \
        [(i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(sent)]
    disk = {bt[2] & 7 for f in sorted(broker.partition_dir(topic, 0).glob("*.log")) for bt in disk_batches(f)}
    want = {None: 0, "gzip": 1, "lz4": 3}[codec]
    # kafka-python sends a batch uncompressed when compressing does not make it smaller
    assert want in disk and disk <= {0, want}, f"codecs of the batches on disk: {disk}"


def test_given_kafka_python_admin_when_creating_describing_deleting_topic_then_configs_round_trip(broker):
    a = kp_admin(broker)
    topic = unique_topic("kpadmin")
    configs = {"retention.ms": "3600000", "segment.bytes": "1048576", "max.message.bytes": "65536",
               "compression.type": "zstd", "message.timestamp.type": "LogAppendTime"}
    try:
        a.create_topics({topic: {"num_partitions": 2, "replication_factor": 1, "configs": configs}},
                        timeout_ms=TIMEOUT_MS)
        assert topic in a.list_topics()

        described = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        entries = described["topic"][topic]
        assert {k: entries[k]["value"] for k in configs} == configs, entries

        a.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while topic in a.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert topic not in a.list_topics()
    finally:
        a.close()


def test_given_records_with_timestamps_when_offsets_for_times_then_the_found_records_own_timestamp_is_answered(broker):
    """ListOffsets by timestamp answers the first record at or after the time asked for, with
    that record's timestamp (Kafka's answer), not the timestamp asked for."""
    topic = create_topic(broker)
    p = kp_producer(broker, compression_type="gzip", linger_ms=0)
    for ts in (1_700_000_001_000, 1_700_000_003_000, 1_700_000_002_000, 1_700_000_009_000):
        p.send(topic, value=str(ts).encode(), timestamp_ms=ts, partition=0).get(timeout=CALL_TIMEOUT_S)
    p.close(timeout=CALL_TIMEOUT_S)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, request_timeout_ms=TIMEOUT_MS + 1000)
    try:
        tp = TopicPartition(topic, 0)
        found = c.offsets_for_times({tp: 1_700_000_001_500})[tp]
        assert (found.offset, found.timestamp) == (1, 1_700_000_003_000)
        found = c.offsets_for_times({tp: 1_700_000_004_000})[tp]
        assert (found.offset, found.timestamp) == (3, 1_700_000_009_000)
        assert c.offsets_for_times({tp: 1_700_000_010_000})[tp] is None
    finally:
        c.close()
