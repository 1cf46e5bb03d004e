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


def test_init_producer_id_naming_another_producers_id_does_not_fence_it(broker):
    """Without a transactional id, InitProducerId always hands out a fresh id at epoch 0 (as
    Kafka's TransactionCoordinator does): naming a producer id, even one another client is
    using, must never bump that id's epoch, or any client could fence another's producer."""
    topic = "idem-fence"
    kc.create_topic(broker.bootstrap, topic, 1)
    with kwire.Conn(broker.port) as a, kwire.Conn(broker.port) as b:
        err, pid, epoch = kwire.init_producer_id_v4(a)
        assert (err, epoch) == (0, 0) and pid >= 0, (err, pid, epoch)
        seq = 0

        def produce_a(n):
            nonlocal seq
            batch = kwire.record_batch([(None, f"a-{seq + i}".encode()) for i in range(n)],
                                       producer_id=pid, producer_epoch=epoch, base_sequence=seq)
            got = kwire.produce_v3(a, topic, 0, batch)
            seq += n
            return got

        assert produce_a(3) == (0, 0)
        # Another client names A's id and epoch (what a re-initialising producer sends).
        err, other_pid, other_epoch = kwire.init_producer_id_v4(b, pid, epoch)
        assert err == 0, err
        assert other_pid != pid and other_pid >= 0, (pid, other_pid)
        assert other_epoch == 0, other_epoch
        # B produces with what it was given, to the same partition...
        batch = kwire.record_batch([(None, b"b-0")], producer_id=other_pid,
                                   producer_epoch=other_epoch, base_sequence=0)
        assert kwire.produce_v3(b, topic, 0, batch) == (0, 3)
        # ...and A's idempotent stream goes on untouched (no INVALID_PRODUCER_EPOCH (47),
        # PRODUCER_FENCED (90) or OUT_OF_ORDER_SEQUENCE_NUMBER (45)).
        assert produce_a(2) == (0, 4)
        # Naming an id that was never handed out gives a fresh one too.
        err, pid3, epoch3 = kwire.init_producer_id_v4(b, 1 << 40, 7)
        assert err == 0 and epoch3 == 0 and pid3 not in (pid, other_pid, 1 << 40), (err, pid3)
        assert produce_a(1) == (0, 6)

    recs, marks = kc.consume_all(broker.bootstrap, topic, [0])
    assert marks[0] == (0, 7)
    assert [r.value for r in recs[0]] == [b"a-0", b"a-1", b"a-2", b"b-0", b"a-3", b"a-4", b"a-5"]


def test_producer_ids_are_never_reused_across_restarts(broker):
    """The id block is persisted before any id in it is handed out, so neither a clean restart
    nor kill -9 hands out an id again."""
    seen = []

    def allocate(n):
        with kwire.Conn(broker.port) as conn:
            for _ in range(n):
                err, pid, epoch = kwire.init_producer_id_v0(conn)
                assert (err, epoch) == (0, 0), (err, pid, epoch)
                seen.append(pid)

    allocate(5)
    broker.stop()
    broker.start()
    allocate(5)
    broker.kill9()
    broker.start()
    allocate(5)
    assert len(set(seen)) == len(seen), f"producer ids reused: {seen}"
    assert seen == sorted(seen), seen
