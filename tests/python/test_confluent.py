"""confluent-kafka (librdkafka) producer, consumer and admin client against strata."""

import time
from collections import defaultdict

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import CALL_TIMEOUT_S, admin, consume, consumer, create_topic, disk_batches, produce_all, producer, watermarks

BASE_TS = 1_700_000_000_000  # explicit CreateTime timestamps, ms


def sample_messages():
    """Keys, values (text, binary, empty, null), headers (with duplicate keys), timestamps."""
    return [
        dict(key=b"k0", value=b"hello", headers=[("h", b"1")], timestamp=BASE_TS),
        dict(key=b"\x00\xff\x01binary-key", value=bytes(range(256)) * 4,
             headers=[("dup", b"a"), ("dup", b"b"), ("other", b"\x00\x01")], timestamp=BASE_TS + 1),
        dict(key=b"k-empty", value=b"", headers=[("empty-header", b"")], timestamp=BASE_TS + 2),
        dict(key=None, value=b"no key", timestamp=BASE_TS + 3),
        dict(key=b"tombstone", value=None, headers=[("null-header", None)], timestamp=BASE_TS - 5000),
        dict(key=b"compressible", value=b"abcdefgh" * 2000, headers=[("dup", b"x")] * 3, timestamp=BASE_TS + 10),
    ]


def as_tuple(m):
    """What a consumer should see for a produced message (headers None when none were sent)."""
    return (m.get("key"), m.get("value"), m.get("headers") or None, (TIMESTAMP_CREATE_TIME, m["timestamp"]))


CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_given_idempotent_acks_all_producer_with_codec_when_consumed_then_keys_values_headers_timestamps_are_exact(broker, codec):
    topic = create_topic(broker)
    sent = sample_messages() * 3  # several batches' worth of records, still in order
    p = producer(broker, **{"compression.type": codec, "enable.idempotence": True, "acks": "all"})

    d = produce_all(p, topic, sent)
    got = consume(broker, topic, len(sent))

    assert [o[2] for o in d.ok] == list(range(len(sent))), "offsets assigned in order from 0"
    assert [m.offset() for m in got] == list(range(len(sent)))
    assert [(m.key(), m.value(), m.headers(), m.timestamp()) for m in got] == [as_tuple(m) for m in sent]
    disk = {bt[2] & 7 for f in sorted(broker.partition_dir(topic, 0).glob("*.log")) for bt in disk_batches(f)}
    # clients send a batch uncompressed when compressing does not make it smaller
    assert CODECS[codec] in disk and disk <= {0, CODECS[codec]}, \
        f"codecs of the batches on disk: {disk} (topic compression.type=producer)"


def test_given_three_partitions_when_keyed_messages_are_produced_then_each_key_stays_in_one_partition_in_order(broker):
    topic = create_topic(broker, partitions=3)
    keys = [f"key-{i}".encode() for i in range(12)]
    sent = [dict(key=k, value=f"{k.decode()}#{round_}".encode()) for round_ in range(5) for k in keys]
    p = producer(broker, **{"enable.idempotence": True, "acks": "all", "compression.type": "lz4"})

    d = produce_all(p, topic, sent)

    partition_of = defaultdict(set)
    for _, part, _, key, _, _ in d.ok:
        partition_of[key].add(part)
    assert all(len(parts) == 1 for parts in partition_of.values()), dict(partition_of)
    assert len({next(iter(s)) for s in partition_of.values()}) > 1, "12 keys should spread over >1 partition"
    for part in range(3):
        expected = [(key, value) for _, pp, _, key, value, _ in sorted(d.ok, key=lambda r: r[2]) if pp == part]
        got = consume(broker, topic, len(expected), partitions=(part,)) if expected else []
        assert [(m.key(), m.value()) for m in got] == expected, f"partition {part}"
        assert [m.offset() for m in got] == list(range(len(expected)))
        # within a partition, each key's rounds come in the order produced
        for key in {k for k, _ in expected}:
            rounds = [int(v.split(b"#")[1]) for k, v in expected if k == key]
            assert rounds == sorted(rounds)


def test_given_timestamped_messages_when_listing_offsets_then_earliest_latest_and_by_time_are_right(broker):
    topic = create_topic(broker)
    sent = [dict(key=None, value=f"m{i}".encode(), timestamp=BASE_TS + i * 1000) for i in range(10)]
    produce_all(producer(broker, **{"linger.ms": 0}), topic, sent)

    assert watermarks(broker, topic) == (0, 10)

    c = consumer(broker)
    try:
        by_time = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS - 1)], timeout=CALL_TIMEOUT_S)
        assert by_time[0].offset == 0
        by_time = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 3500)], timeout=CALL_TIMEOUT_S)
        assert by_time[0].offset == 4, "first offset with timestamp >= 3.5 s is m4"
        by_time = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 5000)], timeout=CALL_TIMEOUT_S)
        assert by_time[0].offset == 5, "exact timestamp match"
        by_time = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 60_000)], timeout=CALL_TIMEOUT_S)
        assert by_time[0].offset == -1, "after every timestamp: no offset (-1 / OFFSET_END)"
    finally:
        c.close()


def test_given_timestamped_messages_when_admin_lists_offsets_then_earliest_latest_max_timestamp_are_right(broker):
    topic = create_topic(broker)
    # max timestamp is in the middle, not at the end
    stamps = [BASE_TS + 1000, BASE_TS + 9000, BASE_TS + 2000, BASE_TS + 3000]
    sent = [dict(value=f"m{i}".encode(), timestamp=t) for i, t in enumerate(stamps)]
    produce_all(producer(broker, **{"linger.ms": 0}), topic, sent)
    a = admin(broker)
    tp = TopicPartition(topic, 0)

    def list_offset(spec):
        res = a.list_offsets({tp: spec}, request_timeout=CALL_TIMEOUT_S)
        info = res[tp].result(timeout=CALL_TIMEOUT_S)
        return info.offset, info.timestamp

    assert list_offset(OffsetSpec.earliest())[0] == 0
    assert list_offset(OffsetSpec.latest())[0] == 4
    assert list_offset(OffsetSpec.max_timestamp()) == (1, BASE_TS + 9000)
    assert list_offset(OffsetSpec.for_timestamp(BASE_TS + 1500))[0] == 1


def test_given_messages_when_consumer_assigned_mid_log_then_it_starts_at_that_offset(broker):
    topic = create_topic(broker)
    produce_all(producer(broker), topic, [dict(value=f"m{i}".encode()) for i in range(20)])

    got = consume(broker, topic, 5, offset=15)

    assert [(m.offset(), m.value()) for m in got] == [(i, f"m{i}".encode()) for i in range(15, 20)]


def test_given_empty_topic_when_watermarks_are_asked_then_both_are_zero(broker):
    topic = create_topic(broker)
    assert watermarks(broker, topic) == (0, 0)


def test_given_log_append_time_topic_when_producing_old_timestamps_then_consumer_sees_broker_append_time(broker):
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    topic = create_topic(broker, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(broker), topic, [dict(value=b"old", timestamp=BASE_TS - 10**9)] * 3)
    after = int(time.time() * 1000)

    got = consume(broker, topic, 3)

    for m in got:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, m.timestamp()
        assert before - 1000 <= ts <= after + 1000, (ts, before, after)


def test_given_topic_with_data_when_admin_deletes_it_then_it_is_gone_and_name_can_be_reused(broker):
    topic = create_topic(broker, config={"retention.ms": "123456"})
    produce_all(producer(broker), topic, [dict(value=b"first life")])
    a = admin(broker)
    from confluent_kafka.admin import ConfigResource
    desc = a.describe_configs([ConfigResource("topic", topic)], request_timeout=CALL_TIMEOUT_S)
    entries = next(iter(desc.values())).result(timeout=CALL_TIMEOUT_S)
    assert entries["retention.ms"].value == "123456"

    a.delete_topics([topic], request_timeout=CALL_TIMEOUT_S)[topic].result(timeout=CALL_TIMEOUT_S)
    assert topic not in a.list_topics(timeout=CALL_TIMEOUT_S).topics
    assert not broker.partition_dir(topic, 0).exists() or not any(broker.partition_dir(topic, 0).glob("*.log"))

    create_topic(broker, name=topic)
    assert watermarks(broker, topic) == (0, 0), "a re-created topic starts empty"


def test_given_acks_0_producer_when_sending_then_messages_are_stored_and_connection_stays_usable(broker):
    topic = create_topic(broker)
    p = producer(broker, **{"acks": 0, "linger.ms": 0, "enable.idempotence": False})

    produce_all(p, topic, [dict(value=f"fire-and-forget {i}".encode()) for i in range(20)])
    # A stray response to an acks=0 request would desynchronise the connection's correlation ids:
    # a later metadata request on the same client must still work.
    md = p.list_topics(topic, timeout=CALL_TIMEOUT_S)

    assert md.topics[topic].error is None
    got = consume(broker, topic, 20)
    assert [m.value() for m in got] == [f"fire-and-forget {i}".encode() for i in range(20)]
