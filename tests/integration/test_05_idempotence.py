"""Idempotent producers: librdkafka end to end and raw duplicate-batch detection."""

import collections

import kclients as kc
import kwire


def test_confluent_idempotent_producer_exactly_once(broker):
    topic = "idem"
    parts = 4
    kc.create_topic(broker.bootstrap, topic, parts)
    n = 20_000
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, **{"enable.idempotence": True, "linger.ms": 5})
    for i in range(n):
        kc.produce(p, topic, f"idem-{i}".encode(), d, key=f"k{i % 101}".encode())
    kc.flush(p)
    d.assert_no_errors()
    assert len(d.acked) == n

    recs, marks = kc.consume_all(broker.bootstrap, topic, range(parts))
    kc.assert_contiguous(recs, marks)
    values = collections.Counter(r.value for rs in recs.values() for r in rs)
    assert sum(values.values()) == n, f"consumed {sum(values.values())} != {n}"
    assert all(c == 1 for c in values.values()), "duplicates"
    assert set(values) == {f"idem-{i}".encode() for i in range(n)}
    for a in d.acked:
        assert recs[a.partition][a.offset].value == a.value


def test_raw_duplicate_batch_is_deduplicated(broker):
    topic = "idem-raw"
    kc.create_topic(broker.bootstrap, topic, 1)
    with kwire.Conn(broker.port) as conn:
        err, pid, epoch = kwire.init_producer_id_v0(conn)
        assert err == 0, f"InitProducerId error {err}"
        assert pid >= 0 and epoch >= 0, (pid, epoch)

        batch0 = kwire.record_batch([(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")],
                                    producer_id=pid, producer_epoch=epoch, base_sequence=0)
        err, base = kwire.produce_v3(conn, topic, 0, batch0)
        assert (err, base) == (0, 0), f"first send: error {err}, base offset {base}"
        err, base = kwire.produce_v3(conn, topic, 0, batch0)  # the SAME bytes again
        assert (err, base) == (0, 0), f"duplicate send: error {err}, base offset {base}"

        batch1 = kwire.record_batch([(b"k3", b"v3"), (b"k4", b"v4")],
                                    producer_id=pid, producer_epoch=epoch, base_sequence=3)
        err, base = kwire.produce_v3(conn, topic, 0, batch1)
        assert (err, base) == (0, 3), f"next batch: error {err}, base offset {base}"
        err, base = kwire.produce_v3(conn, topic, 0, batch1)
        assert (err, base) == (0, 3), f"duplicate of next batch: error {err}, base offset {base}"

        # A non-idempotent batch still appends normally afterwards.
        err, base = kwire.produce_v3(conn, topic, 0, kwire.record_batch([(None, b"plain")]))
        assert (err, base) == (0, 5), (err, base)

    recs, marks = kc.consume_all(broker.bootstrap, topic, [0])
    assert marks[0] == (0, 6)
    kc.assert_contiguous(recs, marks)
    assert [(r.key, r.value) for r in recs[0]] == [
        (b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2"), (b"k3", b"v3"), (b"k4", b"v4"),
        (None, b"plain")]
