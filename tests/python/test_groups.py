"""Consumer groups with real clients: confluent-kafka (librdkafka), kafka-python and kcat -G.

Members that must be killed without leaving run in subprocesses (SIGKILL); they report their
assignments and every message they consume (committed synchronously) as JSON lines."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from conftest import STRATA_BIN
from helpers import CALL_TIMEOUT_S, RDKAFKA_LOG, create_topic, produce_all, producer, unique_topic

GROUP_BROKER = {"group.initial.rebalance.delay.ms": "300"}
SESSION_MS = 6000
MEMBER_CONF = {
    "session.timeout.ms": SESSION_MS,
    "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 10000,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "socket.timeout.ms": 10000,
    "fetch.wait.max.ms": 100,
}

MEMBER_SCRIPT = r"""
import json, sys
from confluent_kafka import Consumer
conf, topic = json.loads(sys.argv[1]), sys.argv[2]
def out(**kw):
    print(json.dumps(kw), flush=True)
c = Consumer(conf)
c.subscribe([topic],
            on_assign=lambda c, ps: out(ev="assign", parts=sorted(p.partition for p in ps)),
            on_revoke=lambda c, ps: out(ev="revoke", parts=sorted(p.partition for p in ps)))
while True:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    c.commit(message=m, asynchronous=False)
    out(ev="msg", p=m.partition(), o=m.offset())
"""


class Member:
    """A confluent-kafka group consumer in its own process."""

    def __init__(self, broker, group, topic, name):
        self.name = name
        conf = dict(MEMBER_CONF, **{"bootstrap.servers": broker.bootstrap, "group.id": group,
                                    "client.id": name})
        self.proc = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, json.dumps(conf), topic],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.assigned = None  # None until the first assignment
        self.consumed = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            with self.lock:
                if ev["ev"] == "assign":
                    self.assigned = set(ev["parts"])
                elif ev["ev"] == "revoke":
                    self.assigned = set()
                else:
                    self.consumed.append((ev["p"], ev["o"]))

    def snapshot(self):
        with self.lock:
            return (None if self.assigned is None else set(self.assigned)), list(self.consumed)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def balanced(members, partitions):
    """Every member has a non-empty assignment; together disjoint and covering all."""
    sets = [m.snapshot()[0] for m in members]
    if any(not s for s in sets):
        return False
    union = set().union(*sets)
    return union == set(range(partitions)) and sum(len(s) for s in sets) == partitions


def produce_round(broker, topic, partitions, round_):
    p = producer(broker)
    msgs = [dict(partition=part, value=f"r{round_}-p{part}-{i}".encode()) for part in range(partitions) for i in range(5)]
    produce_all(p, topic, msgs)
    return len(msgs)


def all_consumed(members, total):
    return sum(len(m.snapshot()[1]) for m in members) >= total


def test_given_a_six_partition_topic_when_consumers_join_and_one_is_killed_then_partitions_are_shared_disjointly_and_move(broker_factory):
    b = broker_factory(GROUP_BROKER)
    topic = create_topic(b, partitions=6)
    group = unique_topic("grp")
    members = [Member(b, group, topic, f"m{i}") for i in range(3)]
    try:
        wait_for("3 members to share 6 partitions", lambda: balanced(members, 6), 30)
        total = produce_round(b, topic, 6, 0)
        wait_for("round 0 consumed", lambda: all_consumed(members, total), 30)

        members.append(Member(b, group, topic, "m3"))
        wait_for("4 members to share 6 partitions", lambda: balanced(members, 6), 30)
        total += produce_round(b, topic, 6, 1)
        wait_for("round 1 consumed", lambda: all_consumed(members, total), 30)

        victim = members.pop(0)
        lost = victim.snapshot()[0]
        victim.kill()
        # Within 30 s: the session timeout evicts the killed member; nothing else would move its
        # partitions that soon (its max.poll.interval.ms is 5 minutes).
        wait_for(f"the killed member's partitions {lost} to move", lambda: balanced(members, 6), 30)
        total += produce_round(b, topic, 6, 2)
        everyone = members + [victim]
        wait_for("round 2 consumed", lambda: all_consumed(everyone, total), 30)

        consumed = [x for m in everyone for x in m.snapshot()[1]]
        dupes = {x for x in consumed if consumed.count(x) > 1}
        assert not dupes, f"messages consumed by two members after commits: {sorted(dupes)[:10]}"
        assert len(consumed) == total
    finally:
        for m in members:
            m.stop()


def group_consumer(broker, group, **conf):
    base = dict(MEMBER_CONF, **{"bootstrap.servers": broker.bootstrap, "group.id": group, "logger": RDKAFKA_LOG})
    base.update(conf)
    return Consumer(base)


def consume_n(c, n, timeout=30):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        out.append(m)
    assert len(out) == n, f"consumed {len(out)} of {n}"
    return out


def test_given_commits_when_the_broker_restarts_or_is_killed_then_a_new_consumer_resumes_after_them(broker_factory):
    b = broker_factory(GROUP_BROKER)
    topic = create_topic(b, partitions=1)
    produce_all(producer(b), topic, [dict(value=f"v{i}".encode()) for i in range(30)])
    group = unique_topic("grp")

    c = group_consumer(b, group)
    c.subscribe([topic])
    got = consume_n(c, 10)
    c.commit(message=got[-1], asynchronous=False)
    c.close()
    b.restart()

    c = group_consumer(b, group)
    assert c.committed([TopicPartition(topic, 0)], timeout=CALL_TIMEOUT_S)[0].offset == 10
    c.subscribe([topic])
    got = consume_n(c, 5)
    assert [m.offset() for m in got] == list(range(10, 15)), "resumed after the commit that survived the restart"
    c.commit(message=got[-1], asynchronous=False)
    c.close()
    assert b.kill() == -9
    b.start()

    c = group_consumer(b, group)
    c.subscribe([topic])
    got = consume_n(c, 1)
    assert got[0].offset() == 15, "an acknowledged commit survives SIGKILL"
    c.close()


def test_given_auto_commit_when_the_broker_restarts_then_the_consumer_resumes_from_its_last_commit(broker_factory):
    b = broker_factory(GROUP_BROKER)
    topic = create_topic(b, partitions=2)
    produce_all(producer(b), topic, [dict(partition=i % 2, value=f"v{i}".encode()) for i in range(40)])
    group = unique_topic("grp")
    c = group_consumer(b, group, **{"enable.auto.commit": True, "auto.commit.interval.ms": 200})
    c.subscribe([topic])
    consume_n(c, 40)
    parts = [TopicPartition(topic, p) for p in (0, 1)]
    wait_for("the auto-commit of all 40", lambda: sum(tp.offset for tp in c.committed(parts, timeout=10)) == 40, 30)
    c.close()
    b.restart()
    produce_all(producer(b), topic, [dict(partition=i % 2, value=f"w{i}".encode()) for i in range(4)])
    c = group_consumer(b, group, **{"enable.auto.commit": True, "auto.commit.interval.ms": 200})
    c.subscribe([topic])
    got = consume_n(c, 4)
    assert sorted(m.value() for m in got) == [f"w{i}".encode() for i in range(4)], \
        "only what was produced after the last auto-commit is read again"
    c.close()


def test_given_kafka_python_group_consumer_when_it_commits_then_a_second_one_resumes_there(broker_factory):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    b = broker_factory(GROUP_BROKER)
    topic = create_topic(b, partitions=2)
    produce_all(producer(b), topic, [dict(partition=i % 2, value=f"v{i}".encode()) for i in range(20)])
    group = unique_topic("grp")

    def kc():
        return KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                             consumer_timeout_ms=15000, request_timeout_ms=20000)

    c = kc()
    got = []
    for m in c:
        got.append(m)
        if len(got) == 20:
            break
    assert len(got) == 20
    assert c.assignment() == {KTP(topic, 0), KTP(topic, 1)}
    c.commit()
    assert c.committed(KTP(topic, 0)) == 10 and c.committed(KTP(topic, 1)) == 10
    c.close()

    produce_all(producer(b), topic, [dict(partition=0, value=b"late")])
    c = kc()
    m = next(iter(c))
    assert (m.partition, m.offset, m.value) == (0, 10, b"late")
    c.close()


def test_given_kcat_balanced_consumer_when_it_reads_then_the_group_shows_its_commits_and_zero_lag(broker_factory):
    b = broker_factory(GROUP_BROKER)
    topic = create_topic(b, partitions=3)
    produce_all(producer(b), topic, [dict(partition=i % 3, value=f"v{i}".encode()) for i in range(15)])
    group = unique_topic("grp")
    out = subprocess.run(
        ["kcat", "-b", b.bootstrap, "-G", group, "-o", "beginning", "-c", "15", "-f", "%p:%o\n",
         "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "-X", "auto.commit.interval.ms=100", topic],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = sorted(tuple(map(int, line.split(":"))) for line in out.stdout.split())
    assert seen == sorted((p, o) for p in range(3) for o in range(5))

    listed = subprocess.run([str(STRATA_BIN), "groups", "list", "--bootstrap", b.bootstrap],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and group in listed.stdout, listed.stdout + listed.stderr
    described = subprocess.run([str(STRATA_BIN), "groups", "describe", group, "--bootstrap", b.bootstrap],
                               capture_output=True, text=True, timeout=30)
    assert described.returncode == 0, described.stderr
    rows = [line.split() for line in described.stdout.splitlines() if line.strip().startswith(topic)]
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [(str(p), "5", "5", "0") for p in range(3)], described.stdout
