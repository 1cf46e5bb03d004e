"""Produce/consume round trips with real clients (confluent-kafka and kafka-python)."""

import collections
import os

import pytest

import kclients as kc

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# >= 100k records over 8 partitions for every codec (override for quick local runs).
ROUNDTRIP_RECORDS = int(os.environ.get("TERN_IT_ROUNDTRIP_RECORDS", "100000"))
PARTITIONS = 8


def _key(i):
    return f"key-{i % 997}".encode()


def _headers(i, codec):
    if i % 3 == 0:
        return []
    hs = [("idx", str(i).encode()), ("codec", codec.encode())]
    if i % 3 == 2:
        hs.append(("idx", b"dup-" + str(i).encode()))  # repeated header key
    return hs


@pytest.mark.timeout(600)
@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip_compression_8_partitions(broker, codec):
    n = ROUNDTRIP_RECORDS
    topic = f"roundtrip-{codec}"
    kc.create_topic(broker.bootstrap, topic, PARTITIONS)

    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, **{
        "compression.type": codec, "acks": "1", "linger.ms": 20,
        "batch.num.messages": 5000, "queue.buffering.max.messages": 200000})
    for i in range(n):
        kc.produce(p, topic, f"{codec}-{i:08d}".encode(), d, key=_key(i),
                   headers=_headers(i, codec) or None)
        if i % 10000 == 0:
            p.poll(0)
    kc.flush(p, timeout=300)
    d.assert_no_errors()
    assert len(d.acked) == n

    recs, marks = kc.consume_all(broker.bootstrap, topic, range(PARTITIONS), timeout=300)
    kc.assert_contiguous(recs, marks)
    total = sum(len(r) for r in recs.values())
    assert total == n, f"consumed {total} records, produced {n}"

    by_value = {}
    key_partitions = collections.defaultdict(set)
    for part, rs in recs.items():
        for r in rs:
            assert r.value not in by_value, f"duplicate value {r.value!r}"
            by_value[r.value] = r
            key_partitions[r.key].add(part)
    for i in range(n):
        v = f"{codec}-{i:08d}".encode()
        r = by_value.get(v)
        assert r is not None, f"record {v!r} missing"
        assert r.key == _key(i), (v, r.key)
        assert r.headers == _headers(i, codec), (v, r.headers)
    multi = {k: ps for k, ps in key_partitions.items() if len(ps) != 1}
    assert not multi, f"keys on more than one partition: {list(multi.items())[:5]}"
    assert all(marks[q][1] > 0 for q in range(PARTITIONS)), f"empty partitions: {marks}"
    # Every delivery report points at the record the consumer sees there.
    for a in d.acked:
        r = recs[a.partition][a.offset]
        assert r.value == a.value, (a.partition, a.offset, a.value, r.value)


def test_kafka_python_roundtrip_gzip_keys_headers(broker):
    topic = "kp-roundtrip"
    kc.create_topic(broker.bootstrap, topic, 3)
    n = 3000
    p = kc.kp_producer(broker.bootstrap, compression_type="gzip", acks="all", linger_ms=5)
    futures = []
    for i in range(n):
        headers = [("n", str(i).encode()), ("src", b"kafka-python")] if i % 2 else []
        futures.append(p.send(topic, value=f"kp-{i}".encode(), key=f"k{i % 50}".encode(),
                              headers=headers))
    p.flush(timeout=60)
    metas = [f.get(timeout=60) for f in futures]
    p.close(timeout=30)

    per_part = collections.defaultdict(int)
    for m in metas:
        per_part[m.partition] += 1
    ranges = {q: (0, per_part[q]) for q in range(3)}
    recs = kc.kp_consume_range(broker.bootstrap, topic, ranges, timeout=120)
    marks = {q: (0, per_part[q]) for q in range(3)}
    kc.assert_contiguous(recs, marks)
    got = {r.value: r for rs in recs.values() for r in rs}
    assert len(got) == n
    key_parts = collections.defaultdict(set)
    for i, meta in enumerate(metas):
        r = got[f"kp-{i}".encode()]
        assert (r.partition, r.offset) == (meta.partition, meta.offset)
        assert r.key == f"k{i % 50}".encode()
        want_h = [("n", str(i).encode()), ("src", b"kafka-python")] if i % 2 else []
        assert r.headers == want_h
        key_parts[r.key].add(r.partition)
    assert all(len(s) == 1 for s in key_parts.values())

    # Cross-client: confluent reads what kafka-python wrote (gzip batches).
    crecs, cmarks = kc.consume_all(broker.bootstrap, topic, range(3))
    assert {q: [(r.offset, r.key, r.value, r.headers) for r in rs] for q, rs in crecs.items()} == \
           {q: [(r.offset, r.key, r.value, r.headers) for r in rs] for q, rs in recs.items()}


def test_consume_from_middle_offset(broker):
    topic = "middle"
    kc.create_topic(broker.bootstrap, topic, 1)
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks="all")
    n = 1000
    for b in range(10):  # ten separate batches of 100 records
        for i in range(b * 100, (b + 1) * 100):
            kc.produce(p, topic, f"m-{i}".encode(), d, key=f"{i}".encode(), partition=0)
        kc.flush(p)
    d.assert_no_errors()
    assert sorted(a.offset for a in d.acked) == list(range(n))
    values = [f"m-{i}".encode() for i in range(n)]

    for start in (0, 1, 250, 300, 555, 999):
        recs = kc.consume_range(broker.bootstrap, topic, {0: (start, n)})[0]
        assert [r.offset for r in recs] == list(range(start, n)), f"start={start}"
        assert [r.value for r in recs] == values[start:], f"start={start}"
    for start in (437, 900):
        recs = kc.kp_consume_range(broker.bootstrap, topic, {0: (start, n)})[0]
        assert [(r.offset, r.value) for r in recs] == list(zip(range(start, n), values[start:]))


NULL_CASES = [
    (None, None),
    (None, b""),
    (b"", b""),
    (b"", None),
    (b"k", None),
    (b"k", b""),
    (None, b"v"),
    (b"k", b"v"),
]


def test_null_and_empty_keys_values(broker):
    topic = "nulls"
    kc.create_topic(broker.bootstrap, topic, 2)
    # partition 0 written by confluent-kafka
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks="all")
    for k, v in NULL_CASES:
        kc.produce(p, topic, v, d, key=k, partition=0)
    kc.flush(p)
    d.assert_no_errors()
    # partition 1 written by kafka-python (which refuses key=None with value=None)
    kp_cases = [(k, v) for k, v in NULL_CASES if (k, v) != (None, None)]
    kp = kc.kp_producer(broker.bootstrap, acks="all")
    futs = [kp.send(topic, value=v, key=k, partition=1) for k, v in kp_cases]
    kp.flush(timeout=30)
    for f in futs:
        f.get(timeout=30)
    kp.close(timeout=30)

    want = {0: list(NULL_CASES), 1: kp_cases}
    ranges = {q: (0, len(want[q])) for q in (0, 1)}
    assert kc.watermarks(broker.bootstrap, topic, 0) == (0, len(want[0]))
    assert kc.watermarks(broker.bootstrap, topic, 1) == (0, len(want[1]))
    recs = kc.consume_range(broker.bootstrap, topic, ranges)
    for q in (0, 1):
        assert [(r.key, r.value) for r in recs[q]] == want[q], f"confluent reading partition {q}"
    krecs = kc.kp_consume_range(broker.bootstrap, topic, ranges)
    for q in (0, 1):
        assert [(r.key, r.value) for r in krecs[q]] == want[q], f"kafka-python reading partition {q}"


def _check_in_order(recs, sent_by_partition):
    for q, values in sent_by_partition.items():
        assert [r.value for r in recs[q]] == values, f"partition {q} content differs"


@pytest.mark.parametrize("acks", ["0", "all"])
def test_confluent_acks(broker, acks):
    topic = f"acks-{acks}"
    kc.create_topic(broker.bootstrap, topic, 2)
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks=acks, **{"enable.idempotence": False})
    n = 4000
    sent = {0: [], 1: []}
    for i in range(n):
        v = f"{acks}-{i}".encode()
        sent[i % 2].append(v)
        kc.produce(p, topic, v, d, partition=i % 2)
    kc.flush(p)
    d.assert_no_errors()
    if acks == "all":
        for q in (0, 1):
            assert sorted(a.offset for a in d.acked if a.partition == q) == list(range(n // 2))
    marks = kc.wait_high_watermarks(broker.bootstrap, topic, [0, 1], n)
    assert marks == {0: (0, n // 2), 1: (0, n // 2)}
    recs = kc.consume_range(broker.bootstrap, topic, marks)
    kc.assert_contiguous(recs, marks)
    _check_in_order(recs, sent)


@pytest.mark.parametrize("acks", [0, "all"])
def test_kafka_python_acks(broker, acks):
    topic = f"kp-acks-{acks}"
    kc.create_topic(broker.bootstrap, topic, 2)
    p = kc.kp_producer(broker.bootstrap, acks=acks, enable_idempotence=False, linger_ms=5)
    n = 2000
    sent = {0: [], 1: []}
    futs = []
    for i in range(n):
        v = f"kp{acks}-{i}".encode()
        sent[i % 2].append(v)
        futs.append(p.send(topic, value=v, partition=i % 2))
    p.flush(timeout=60)
    for f in futs:
        f.get(timeout=60)
    p.close(timeout=30)
    marks = kc.wait_high_watermarks(broker.bootstrap, topic, [0, 1], n)
    assert marks == {0: (0, n // 2), 1: (0, n // 2)}
    recs = kc.kp_consume_range(broker.bootstrap, topic, marks)
    kc.assert_contiguous(recs, marks)
    _check_in_order(recs, sent)
