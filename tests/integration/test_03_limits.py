"""Large records and message.max.bytes enforcement."""

import os

import pytest
from kafka.errors import MessageSizeTooLargeError

import kclients as kc
from kclients import KafkaError


def test_900kb_record_roundtrip(broker):
    topic = "big"
    kc.create_topic(broker.bootstrap, topic, 1)
    v1 = os.urandom(900 * 1024)
    v2 = os.urandom(900 * 1024)
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks="all")
    kc.produce(p, topic, v1, d, key=b"big-1", partition=0)
    kc.flush(p)
    d.assert_no_errors()
    kp = kc.kp_producer(broker.bootstrap, acks="all")
    kp.send(topic, value=v2, key=b"big-2", partition=0).get(timeout=60)
    kp.close(timeout=30)

    recs = kc.consume_range(broker.bootstrap, topic, {0: (0, 2)})[0]
    assert [(r.offset, r.key) for r in recs] == [(0, b"big-1"), (1, b"big-2")]
    assert recs[0].value == v1 and recs[1].value == v2
    krecs = kc.kp_consume_range(broker.bootstrap, topic, {0: (0, 2)})[0]
    assert [r.value for r in krecs] == [v1, v2]


def test_record_larger_than_message_max_bytes_rejected(broker_factory):
    b = broker_factory("--message-max-bytes", "100000")
    topic = "limited"
    kc.create_topic(b.bootstrap, topic, 1)

    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all", **{"message.max.bytes": 10_000_000,
                                                 "message.send.max.retries": 0,
                                                 "enable.idempotence": False})
    kc.produce(p, topic, os.urandom(200 * 1024), d, partition=0)
    kc.flush(p)
    assert len(d.errors) == 1 and not d.acked, (d.errors, d.acked)
    err = d.errors[0][0]
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, f"expected MSG_SIZE_TOO_LARGE, got {err}"

    kp = kc.kp_producer(b.bootstrap, acks="all", max_request_size=10_000_000, retries=0,
                        enable_idempotence=False)
    with pytest.raises(MessageSizeTooLargeError):
        kp.send(topic, value=os.urandom(200 * 1024), partition=0).get(timeout=60)

    # The broker still accepts records under the limit, at offset 0.
    small = kp.send(topic, value=b"small", partition=0).get(timeout=60)
    kp.close(timeout=30)
    assert small.offset == 0
    d2 = kc.Deliveries()
    kc.produce(p, topic, os.urandom(50_000), d2, partition=0)
    kc.flush(p)
    d2.assert_no_errors()
    assert [a.offset for a in d2.acked] == [1]
    assert kc.watermarks(b.bootstrap, topic, 0) == (0, 2)
