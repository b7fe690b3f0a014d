"""Durability across SIGKILL (fsync before every ack) and across a clean SIGTERM restart."""

import re
import threading
import time

from helpers import Deliveries, create_topic, producer, read_all, watermarks


def test_given_fsync_always_and_acks_all_when_broker_is_killed_mid_stream_then_every_acked_message_survives(broker_factory):
    b = broker_factory({"log.flush.interval.messages": "1"})
    topic = create_topic(b, partitions=2, config={"flush.messages": "1"})
    p = producer(b, **{"acks": "all", "enable.idempotence": True, "linger.ms": 2,
                       "message.timeout.ms": 4000, "retries": 1000000, "retry.backoff.ms": 50})
    d = Deliveries()
    stop = threading.Event()
    produced = [0]

    def send():
        i = 0
        while not stop.is_set() and i < 50_000:
            try:
                p.produce(topic, key=f"k{i % 7}".encode(), value=f"v{i:06d}".encode(), on_delivery=d)
                i += 1
                produced[0] = i
            except BufferError:
                pass
            p.poll(0.001 if i % 50 == 0 else 0)
        p.flush(8)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    # A bound against a hang, not a speed target (a debug build on a loaded machine is slow).
    deadline = time.monotonic() + 180
    while len(d.ok) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(d.ok) >= 500, f"only {len(d.ok)} acks before the kill; errors: {d.errors[:3]}"
    rc = b.kill()
    acked_at_kill, produced_at_kill = len(d.ok), produced[0]
    stop.set()
    t.join(20)
    assert not t.is_alive(), "producer thread did not finish"
    assert rc == -9
    acked = list(d.ok)  # includes reports delivered after the kill for acks received before it

    b.start()
    stored = read_all(b, topic, (0, 1), timeout=30)

    print(f"produced at kill {produced_at_kill}, in all {produced[0]}; acked before kill: {acked_at_kill}, acked in all: {len(acked)}, errors: {len(d.errors)}, "
          f"read back: {[(pp, len(v)) for pp, v in stored.items()]}")
    by_offset = {(part, m.offset()): m.value() for part, msgs in stored.items() for m in msgs}
    lost = [(part, off, val) for _, part, off, _, val, _ in acked if by_offset.get((part, off)) != val]
    assert not lost, (f"{len(lost)} of {len(acked)} acknowledged messages lost or changed after SIGKILL "
                      f"(first: {lost[:5]}; read back {[(pp, len(v)) for pp, v in stored.items()]})")
    assert acked_at_kill >= 500
    for part, msgs in stored.items():
        assert [m.offset() for m in msgs] == list(range(len(msgs))), f"partition {part} offsets contiguous"
        values = [m.value() for m in msgs]
        assert values == sorted(values), f"partition {part}: one idempotent producer's order is kept"


def test_given_data_when_broker_stops_cleanly_and_restarts_then_everything_is_there_without_recovery(broker_factory):
    b = broker_factory()
    t1 = create_topic(b, partitions=2)
    t2 = create_topic(b, config={"compression.type": "zstd"})
    p = producer(b, **{"acks": "all", "compression.type": "gzip"})
    for i in range(300):
        p.produce(t1, key=f"k{i % 11}".encode(), value=f"a{i}".encode(), headers=[("i", str(i).encode())])
        p.produce(t2, value=f"b{i}".encode() * 10)
    assert p.flush(15) == 0
    before = {t: read_all(b, t, parts) for t, parts in ((t1, (0, 1)), (t2, (0,)))}
    marks = {(t, part): watermarks(b, t, part) for t, part in ((t1, 0), (t1, 1), (t2, 0))}

    assert b.stop() == 0, b.stderr_text()
    b.start()

    assert {(t, part): watermarks(b, t, part) for t, part in marks} == marks
    after = {t: read_all(b, t, parts) for t, parts in ((t1, (0, 1)), (t2, (0,)))}

    def flat(x):
        return {t: {part: [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()) for m in msgs]
                    for part, msgs in by_part.items()} for t, by_part in x.items()}

    assert flat(after) == flat(before)
    assert sum(len(v) for v in after[t1].values()) == 300 and len(after[t2][0]) == 300
    noise = [line for line in b.stderr_text().splitlines()
             if re.search(r"recover|truncat|torn|corrupt|damaged|unclean", line, re.I)]
    assert not noise, "a clean restart should not recover anything:\n" + "\n".join(noise)
