"""ListOffsets: by timestamp, earliest (-2) and latest (-1)."""

import time

from kafka import TopicPartition as KTP

import kclients as kc
from kclients import TopicPartition


def _batches(base):
    """Timestamps per batch: increasing batches, the last one decreasing inside."""
    return [
        [base + j * 10 for j in range(10)],               # offsets 0..9
        [base + 1000 + j * 10 for j in range(10)],        # offsets 10..19
        [base + 2000 + j * 10 for j in range(10)],        # offsets 20..29
        [base + 5000 - j * 10 for j in range(10)],        # offsets 30..39, not monotonic
    ]


def _expected(timestamps, target):
    """Kafka semantics: first offset whose timestamp >= target, else -1."""
    for off, ts in enumerate(timestamps):
        if ts >= target:
            return off
    return -1


def test_offsets_for_times_and_watermarks(broker):
    topic = "by-time"
    kc.create_topic(broker.bootstrap, topic, 1)
    base = int(time.time() * 1000) - 3_600_000
    batches = _batches(base)
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks="all")
    off = 0
    for batch in batches:
        for ts in batch:
            kc.produce(p, topic, f"t-{off}".encode(), d, partition=0, timestamp=ts)
            off += 1
        kc.flush(p)  # one produce request (batch) per group
    d.assert_no_errors()
    timestamps = [ts for b in batches for ts in b]
    n = len(timestamps)

    # Records carry their CreateTime.
    recs = kc.consume_range(broker.bootstrap, topic, {0: (0, n)})[0]
    assert [r.timestamp for r in recs] == timestamps

    targets = {
        "before first": base - 100_000,
        "exactly first": base,
        "inside first batch": base + 25,
        "exact inside batch": base + 30,
        "last of first batch": base + 90,
        "between batches": base + 500,
        "start of second batch": base + 1000,
        "inside third batch": base + 2011,
        "between third and fourth": base + 3000,
        "inside non-monotonic batch": base + 4955,
        "max timestamp": base + 5000,
        "after last": base + 5001,
        "far future": base + 10**9,
    }
    c = kc.consumer(broker.bootstrap)
    try:
        for name, target in targets.items():
            want = _expected(timestamps, target)
            (res,) = c.offsets_for_times([TopicPartition(topic, 0, target)], timeout=30)
            assert res.error is None, (name, res.error)
            assert res.offset == want, f"confluent offsets_for_times {name}: {res.offset} != {want}"
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False) == (0, n)
    finally:
        c.close()

    kp = kc.kp_consumer(broker.bootstrap)
    try:
        tp = KTP(topic, 0)
        for name, target in targets.items():
            want = _expected(timestamps, target)
            res = kp.offsets_for_times({tp: target}, timeout_ms=30_000)[tp]
            if want == -1:
                assert res is None, f"kafka-python offsets_for_times {name}: {res} != None"
            else:
                assert res is not None and res.offset == want, \
                    f"kafka-python offsets_for_times {name}: {res} != {want}"
                assert res.timestamp == timestamps[want], (name, res)
        assert kp.beginning_offsets([tp], timeout_ms=30_000) == {tp: 0}
        assert kp.end_offsets([tp], timeout_ms=30_000) == {tp: n}
    finally:
        kp.close()


def test_watermarks_empty_and_multi_partition(broker):
    topic = "marks"
    kc.create_topic(broker.bootstrap, topic, 3)
    c = kc.consumer(broker.bootstrap)
    try:
        for q in range(3):
            assert c.get_watermark_offsets(TopicPartition(topic, q), timeout=30, cached=False) == (0, 0)
    finally:
        c.close()
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap)
    for q, count in ((0, 5), (2, 17)):
        for i in range(count):
            kc.produce(p, topic, b"x", d, partition=q)
    kc.flush(p)
    d.assert_no_errors()
    kp = kc.kp_consumer(broker.bootstrap)
    try:
        tps = [KTP(topic, q) for q in range(3)]
        assert kp.beginning_offsets(tps, timeout_ms=30_000) == {t: 0 for t in tps}
        assert kp.end_offsets(tps, timeout_ms=30_000) == {tps[0]: 5, tps[1]: 0, tps[2]: 17}
        # a timestamp query on an empty partition finds nothing
        assert kp.offsets_for_times({tps[1]: 0}, timeout_ms=30_000)[tps[1]] is None
    finally:
        kp.close()
