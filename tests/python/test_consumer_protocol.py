"""The next-generation consumer group protocol (KIP-848, `group.protocol=consumer`) with
librdkafka: server-side assignment, partitions split on join and taken over on leave, commits
with the member epoch, and a new member resuming from them."""

import time

from confluent_kafka import Consumer, TopicPartition

from helpers import CALL_TIMEOUT_S, RDKAFKA_LOG, create_topic, produce_all, producer

SETTINGS = {"group.consumer.heartbeat.interval.ms": "300"}


def consumer(broker, group, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "logger": RDKAFKA_LOG,
    }
    conf.update(extra)
    return Consumer(conf)


def poll_until(consumers, done, timeout=CALL_TIMEOUT_S * 2):
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        for c in consumers:
            m = c.poll(0.1)
            if m is not None:
                assert m.error() is None, m.error()
                got.append(m)
        if done(got):
            return got
    raise AssertionError(f"not done within {timeout}s: {len(got)} messages, "
                         f"assignments {[sorted(p.partition for p in c.assignment()) for c in consumers]}")


def parts(c):
    return sorted(p.partition for p in c.assignment())


def test_given_consumer_protocol_members_when_they_join_and_leave_then_partitions_are_split_disjointly_and_taken_over(broker_factory):
    broker = broker_factory(SETTINGS)
    topic = create_topic(broker, partitions=4)
    produce_all(producer(broker), topic, [{"key": str(i).encode(), "value": f"v{i}".encode()} for i in range(40)])
    group = f"{topic}-g"
    c1 = consumer(broker, group)
    c1.subscribe([topic])
    got = poll_until([c1], lambda g: len(g) >= 40)
    assert sorted(m.value().decode() for m in got) == sorted(f"v{i}" for i in range(40))
    assert parts(c1) == [0, 1, 2, 3]
    c1.commit(asynchronous=False)
    # A second member: the partitions are split, never owned by both.
    c2 = consumer(broker, group)
    c2.subscribe([topic])

    def split(_):
        a, b = parts(c1), parts(c2)
        assert not set(a) & set(b), f"owned by both: {a} {b}"
        return len(a) == 2 and len(b) == 2
    poll_until([c1, c2], split)
    # The first leaves: the second takes everything, and resumes at the committed offsets.
    c1.close()
    poll_until([c2], lambda _: parts(c2) == [0, 1, 2, 3])
    committed = c2.committed([TopicPartition(topic, p) for p in range(4)], timeout=CALL_TIMEOUT_S)
    assert sum(tp.offset for tp in committed) == 40, committed
    produce_all(producer(broker), topic, [{"key": b"late", "value": b"late"}])
    late = poll_until([c2], lambda g: any(m.value() == b"late" for m in g))
    assert all(m.value() == b"late" for m in late), "nothing committed is read again"
    c2.close()
