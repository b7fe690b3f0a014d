"""Transactions are not implemented: a transactional producer must fail at once with an error
that says so, never retry a coordinator lookup for a minute (or forever)."""

import pytest
from confluent_kafka import KafkaException, Producer
from kafka import KafkaProducer
from kafka.errors import KafkaError as KPError

from helpers import RDKAFKA_LOG

# Longer than any answer should take, far shorter than the 60 s clients retried for before.
GIVE_UP_S = 10


def test_given_a_transactional_confluent_producer_when_init_transactions_then_a_fatal_error_says_unsupported(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tx-1",
                  "socket.timeout.ms": 10000, "logger": RDKAFKA_LOG})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(GIVE_UP_S)
    err = e.value.args[0]
    assert err.fatal(), f"a retriable error makes the application retry: {err}"
    assert "transactions are not supported" in err.str(), err.str()


def test_given_a_transactional_kafka_python_producer_when_init_transactions_then_it_fails_saying_unsupported(broker):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-2",
                      request_timeout_ms=GIVE_UP_S * 1000, max_block_ms=GIVE_UP_S * 1000)
    try:
        with pytest.raises(KPError) as e:
            p.init_transactions()
        # kafka-python names the Kafka error; a timeout here would mean it kept retrying.
        assert "TransactionalIdAuthorization" in type(e.value).__name__ or \
            "TransactionalIdAuthorization" in str(e.value), repr(e.value)
    finally:
        p.close(timeout=1)
