"""Admin APIs that change a running broker, through two clients' admin APIs (confluent-kafka and
kafka-python): CreatePartitions, IncrementalAlterConfigs / AlterConfigs, DeleteRecords."""

import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   ResourceType)
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType as KpType
from kafka.admin import NewPartitions as KpNewPartitions

from helpers import CALL_TIMEOUT_S, admin, consume, create_topic, producer, watermarks


def topic_partitions(a, topic):
    md = a.list_topics(topic=topic, timeout=CALL_TIMEOUT_S)
    return len(md.topics[topic].partitions)


def described(a, topic):
    fs = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=CALL_TIMEOUT_S)
    (res, f), = fs.items()
    return {k: (e.value, e.source) for k, e in f.result(timeout=CALL_TIMEOUT_S).items()}


def produce_keys(broker, topic, keys):
    p = producer(broker)
    delivered = {}

    def cb(err, msg):
        assert err is None, err
        delivered[msg.key().decode()] = msg.partition()

    for k in keys:
        p.produce(topic, key=k.encode(), value=b"v", on_delivery=cb)
    assert p.flush(CALL_TIMEOUT_S) == 0
    return delivered


def test_given_confluent_admin_when_partitions_are_added_then_keys_spread_over_the_new_count(broker):
    a = admin(broker)
    topic = create_topic(broker, partitions=2)
    keys = [f"key-{i}" for i in range(200)]
    before = produce_keys(broker, topic, keys)
    assert set(before.values()) <= {0, 1}
    fs = a.create_partitions([NewPartitions(topic, 6)], request_timeout=CALL_TIMEOUT_S)
    fs[topic].result(timeout=CALL_TIMEOUT_S)
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while topic_partitions(a, topic) != 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic_partitions(a, topic) == 6
    # A new producer sees 6 partitions: keys now map by the new count, as with Kafka.
    after = produce_keys(broker, topic, keys)
    assert set(after.values()) == set(range(6)), sorted(set(after.values()))
    # Shrinking is refused with INVALID_PARTITIONS.
    fs = a.create_partitions([NewPartitions(topic, 3)], request_timeout=CALL_TIMEOUT_S)
    try:
        fs[topic].result(timeout=CALL_TIMEOUT_S)
        raise AssertionError("shrinking was accepted")
    except Exception as e:  # KafkaException carrying INVALID_PARTITIONS
        assert "INVALID_PARTITIONS" in str(e) or "partitions" in str(e), e


def test_given_confluent_admin_when_configs_are_altered_then_describe_shows_them_and_they_apply(broker):
    a = admin(broker)
    topic = create_topic(broker, config={"retention.ms": "60000"})
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    for f in a.incremental_alter_configs([res], request_timeout=CALL_TIMEOUT_S).values():
        f.result(timeout=CALL_TIMEOUT_S)
    d = described(a, topic)
    assert d["max.message.bytes"][0] == "2000"
    assert int(d["max.message.bytes"][1]) == 1, d["max.message.bytes"]  # DYNAMIC_TOPIC_CONFIG
    assert d["retention.ms"][0] == "604800000", d["retention.ms"]
    # The new limit applies to the next produce.
    p = producer(broker)
    errors = []
    p.produce(topic, value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    p.flush(CALL_TIMEOUT_S)
    assert errors and errors[0] is not None and "MSG_SIZE_TOO_LARGE" in str(errors[0]), errors
    # A bad value is refused with INVALID_CONFIG and changes nothing.
    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.bytes", "-1", incremental_operation=AlterConfigOpType.SET)])
    try:
        for f in a.incremental_alter_configs([bad], request_timeout=CALL_TIMEOUT_S).values():
            f.result(timeout=CALL_TIMEOUT_S)
        raise AssertionError("segment.bytes=-1 was accepted")
    except Exception as e:
        assert "INVALID_CONFIG" in str(e) or "segment.bytes" in str(e), e
    assert described(a, topic)["segment.bytes"][0] == "1073741824"


def test_given_confluent_admin_when_records_are_deleted_then_consumers_start_at_the_low_watermark(broker):
    a = admin(broker)
    topic = create_topic(broker)
    p = producer(broker)
    for i in range(10):
        p.produce(topic, value=f"r{i}".encode())
    assert p.flush(CALL_TIMEOUT_S) == 0
    fs = a.delete_records([TopicPartition(topic, 0, 4)], request_timeout=CALL_TIMEOUT_S)
    (tp, f), = fs.items()
    assert f.result(timeout=CALL_TIMEOUT_S).low_watermark == 4
    assert watermarks(broker, topic) == (4, 10)
    got = consume(broker, topic, 6, offset=OFFSET_BEGINNING)
    assert [m.value().decode() for m in got] == [f"r{i}" for i in range(4, 10)]


def test_given_kafka_python_admin_when_partitions_configs_and_records_change_then_each_applies(broker):
    topic = create_topic(broker, partitions=1)
    p = producer(broker)
    for i in range(5):
        p.produce(topic, value=f"r{i}".encode())
    assert p.flush(CALL_TIMEOUT_S) == 0
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=CALL_TIMEOUT_S * 1000)
    try:
        a.create_partitions({topic: KpNewPartitions(total_count=3)})
        assert len(a.describe_topics([topic])[0]["partitions"]) == 3
        a.alter_configs([KpConfigResource(KpType.TOPIC, topic, configs={"retention.ms": "7200000"})])
        d = a.describe_configs([KpConfigResource(KpType.TOPIC, topic)])
        assert d["topic"][topic]["retention.ms"]["value"] == "7200000", d
        out = a.delete_records({KpTopicPartition(topic, 0): 2}, timeout_ms=CALL_TIMEOUT_S * 1000)
        assert out[KpTopicPartition(topic, 0)]["low_watermark"] == 2, out
    finally:
        a.close()
    c = admin(broker)
    assert topic_partitions(c, topic) == 3


def test_given_kafka_python_admin_when_it_describes_the_cluster_log_dirs_and_producers_and_deletes_group_offsets_then_kafka_answers_come_back(broker):
    from kafka import KafkaConsumer
    topic = create_topic(broker, partitions=2)
    p = producer(broker, **{"enable.idempotence": True})
    for i in range(4):
        p.produce(topic, value=f"r{i}".encode(), partition=0)
    assert p.flush(CALL_TIMEOUT_S) == 0
    group = f"{topic}-g"
    # Committed offsets of a group without members, then OffsetDelete of one partition.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    c.commit({KpTopicPartition(topic, 0): _offset(2), KpTopicPartition(topic, 1): _offset(0)})
    c.close()
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=CALL_TIMEOUT_S * 1000)
    try:
        cluster = a.describe_cluster()
        assert [b["broker_id"] for b in cluster["brokers"]] == [0], cluster
        assert cluster["cluster_id"].startswith("strata-"), cluster
        dirs = a.describe_log_dirs({topic: [0, 1]})
        sizes = {(t["name"], part["partition_index"]): part["partition_size"]
                 for d in dirs for r in d["log_dirs"] for t in r["topics"] for part in t["partitions"]}
        assert sizes[(topic, 0)] > 0 and sizes[(topic, 1)] == 0, dirs
        assert all(r["usable_bytes"] > 0 for d in dirs for r in d["log_dirs"]), dirs
        producers = a.describe_producers([KpTopicPartition(topic, 0)])
        states = list(producers.values())[0]
        assert len(_active(states)) == 1, producers
        a.delete_group_offsets(group, [KpTopicPartition(topic, 0)])
        left = a.list_group_offsets(group)[group]
        assert KpTopicPartition(topic, 0) not in left and KpTopicPartition(topic, 1) in left, left
    finally:
        a.close()


def _offset(n):
    from kafka.structs import OffsetAndMetadata
    try:
        return OffsetAndMetadata(n, "", -1)
    except TypeError:
        return OffsetAndMetadata(n, "")


def _active(state):
    return state.active_producers


def test_given_confluent_admin_when_a_dynamic_broker_config_is_set_then_topics_without_overrides_follow(broker):
    a = admin(broker)
    topic = create_topic(broker)
    res = ConfigResource(ResourceType.BROKER, "0", incremental_configs=[
        ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    for f in a.incremental_alter_configs([res], request_timeout=CALL_TIMEOUT_S).values():
        f.result(timeout=CALL_TIMEOUT_S)
    value, source = described(a, topic)["retention.ms"]
    assert value == "7200000" and int(source) == 2, (value, source)  # DYNAMIC_BROKER_CONFIG
    static = ConfigResource(ResourceType.BROKER, "0", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
    try:
        for f in a.incremental_alter_configs([static], request_timeout=CALL_TIMEOUT_S).values():
            f.result(timeout=CALL_TIMEOUT_S)
        raise AssertionError("a static broker setting was changed")
    except Exception as e:
        assert "INVALID_REQUEST" in str(e) or "dynamically" in str(e), e
