"""Three strata nodes in combined mode (broker + metadata-quorum voter), driven by real clients:
confluent-kafka (librdkafka 2.16) and kcat (librdkafka 2.0.2). Issue "cluster part 1"."""

import shutil
import socket
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from helpers import unique_topic

WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(broker_factory):
    """Three nodes, ids 1-3, their controller listeners on fixed free ports."""
    controllers = [free_port() for _ in range(3)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(controllers))
    nodes = []
    for i, port in enumerate(controllers):
        nodes.append(broker_factory({
            "process.roles": "broker,controller",
            "node.id": str(i + 1),
            "controller.quorum.voters": voters,
            "listeners": f"CONTROLLER://127.0.0.1:{port}",
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }))
    # Every broker registered and unfenced, as node 1 sees them.
    a = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            # Until the first brokers are unfenced the list is empty, which librdkafka
            # reports as a partial response.
            if len(a.list_topics(timeout=5).brokers) == 3:
                break
        except KafkaException:
            pass
        assert time.monotonic() < deadline, "the three brokers did not register"
        time.sleep(0.2)
    return nodes


def bootstrap(nodes):
    return ",".join(n.bootstrap for n in nodes)


def test_confluent_kafka_creates_produces_consumes_and_configures_across_three_brokers(cluster):
    topic = unique_topic("cluster")
    # Created through node 1 ...
    a1 = AdminClient({"bootstrap.servers": cluster[0].bootstrap})
    for _, f in a1.create_topics([NewTopic(topic, 6, 1)]).items():
        f.result(timeout=30)
    # ... seen by node 3 with every broker and leaders spread two per broker.
    a3 = AdminClient({"bootstrap.servers": cluster[2].bootstrap})
    deadline = time.monotonic() + WAIT_S
    while True:
        md = a3.list_topics(timeout=5)
        if topic in md.topics and len(md.topics[topic].partitions) == 6:
            break
        assert time.monotonic() < deadline, "topic not visible on node 3"
        time.sleep(0.2)
    assert sorted(md.brokers) == [1, 2, 3]
    leaders = sorted(p.leader for p in md.topics[topic].partitions.values())
    assert leaders == [1, 1, 2, 2, 3, 3], leaders

    # An idempotent producer bootstrapped at node 2 writes every partition through its leader.
    p = Producer({"bootstrap.servers": cluster[1].bootstrap, "enable.idempotence": True, "acks": "all"})
    acked, errors = [], []
    for i in range(600):
        p.produce(topic, key=f"k{i}", value=f"v{i}",
                  on_delivery=lambda e, m: errors.append(e) if e else acked.append((m.partition(), m.offset(), m.value())))
    assert p.flush(30) == 0
    assert not errors and len(acked) == 600

    # A consumer group bootstrapped at node 3 reads all of it, each partition in order.
    c = Consumer({"bootstrap.servers": cluster[2].bootstrap, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = {}
    deadline = time.monotonic() + WAIT_S
    while sum(len(v) for v in got.values()) < 600 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.setdefault(m.partition(), []).append((m.offset(), m.value()))
    want = {}
    for part, off, val in acked:
        want.setdefault(part, []).append((off, val))
    assert {k: sorted(v) for k, v in want.items()} == got
    c.commit(asynchronous=False)
    committed = c.committed([m for m in c.assignment()], timeout=10)
    assert sum(tp.offset for tp in committed) == 600
    c.close()

    # A config changed through node 2 reaches node 1 (through the metadata log).
    a2 = AdminClient({"bootstrap.servers": cluster[1].bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "3600000"})
    for _, f in a2.alter_configs([res]).items():
        f.result(timeout=30)
    deadline = time.monotonic() + WAIT_S
    while True:
        r = ConfigResource(ConfigResource.Type.TOPIC, topic)
        cfg = list(a1.describe_configs([r]).values())[0].result(timeout=10)
        if cfg["retention.ms"].value == "3600000":
            break
        assert time.monotonic() < deadline, "config not applied on node 1"
        time.sleep(0.2)

    # Deleted through node 3: gone on node 1.
    for _, f in a3.delete_topics([topic]).items():
        f.result(timeout=30)
    deadline = time.monotonic() + WAIT_S
    while topic in a1.list_topics(timeout=5).topics:
        assert time.monotonic() < deadline, "topic still on node 1"
        time.sleep(0.2)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (scripts/client-tests installs it)")
def test_kcat_sees_three_brokers_and_moves_records_through_the_leaders(cluster):
    topic = unique_topic("kcat-cluster")
    a = AdminClient({"bootstrap.servers": cluster[0].bootstrap})
    a.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    out = subprocess.run(["kcat", "-b", cluster[1].bootstrap, "-L", "-t", topic, "-m", "10"],
                         capture_output=True, timeout=60).stdout.decode()
    assert " 3 brokers:" in out, out
    for i, n in enumerate(cluster):
        assert f"broker {i + 1} at {n.bootstrap}" in out, out
    lines = "".join(f"k{i}:line {i}\n" for i in range(90)).encode()
    r = subprocess.run(["kcat", "-b", cluster[2].bootstrap, "-P", "-t", topic, "-K:", "-m", "20"],
                       input=lines, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["kcat", "-b", cluster[0].bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                        "-m", "20", "-f", "%k:%s\n"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.decode().splitlines()) == sorted(lines.decode().splitlines())
