"""Restart, kill -9 and corrupted-tail recovery."""

import collections
import signal
import time

import kclients as kc
from kwire import parse_log_batches


def _produce_values(bootstrap, topic, values_by_partition, **conf):
    d = kc.Deliveries()
    p = kc.producer(bootstrap, acks="all", **conf)
    for q, values in values_by_partition.items():
        for v in values:
            kc.produce(p, topic, v, d, key=v[:4], partition=q)
    kc.flush(p)
    d.assert_no_errors()
    return d


def test_clean_restart_keeps_data_and_metadata(broker):
    topic = "restart"
    kc.create_topic(broker.bootstrap, topic, 3)
    first = {q: [f"a{q}-{i}".encode() for i in range(500 + 100 * q)] for q in range(3)}
    _produce_values(broker.bootstrap, topic, first)

    broker.stop()        # SIGTERM -> exit code 0 (asserted)
    broker.start()

    tm = kc.wait_for_topic(broker.bootstrap, topic, 3)
    assert len(tm.partitions) == 3
    recs, marks = kc.consume_all(broker.bootstrap, topic, range(3))
    assert marks == {q: (0, len(first[q])) for q in range(3)}
    kc.assert_contiguous(recs, marks)
    for q in range(3):
        assert [r.value for r in recs[q]] == first[q]

    # New produces continue at the right offsets.
    second = {q: [f"b{q}-{i}".encode() for i in range(50)] for q in range(3)}
    d = _produce_values(broker.bootstrap, topic, second)
    for q in range(3):
        got = sorted(a.offset for a in d.acked if a.partition == q)
        assert got == list(range(len(first[q]), len(first[q]) + 50)), f"partition {q}"

    # And a second restart (this time SIGINT) still has everything.
    broker.stop(sig=signal.SIGINT)
    broker.start()
    recs, marks = kc.consume_all(broker.bootstrap, topic, range(3))
    kc.assert_contiguous(recs, marks)
    for q in range(3):
        assert [r.value for r in recs[q]] == first[q] + second[q]

    # A clean restart trusts the clean-shutdown marker: no segment is rescanned.
    assert "unclean shutdown, recovering segment" not in broker.stderr_text()


def test_kill9_under_acks1_load_keeps_acknowledged_records(broker):
    topic = "kill9"
    parts = 4
    kc.create_topic(broker.bootstrap, topic, parts)

    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, **{
        "acks": "1", "enable.idempotence": False, "linger.ms": 2,
        "message.timeout.ms": 60_000, "retry.backoff.ms": 200,
        "queue.buffering.max.messages": 50_000})
    # Kill once this many records are acknowledged, with more still in flight: the moment
    # depends on progress, not on how fast this machine is.
    kill_after = 5_000
    seq = 0
    deadline = time.monotonic() + 120  # a bound against hanging, not a timing assertion
    while len(d.acked) < kill_after:
        assert time.monotonic() < deadline, (
            f"only {len(d.acked)} records acknowledged, errors {d.errors[:3]}")
        assert not d.errors, f"delivery errors before the kill: {d.errors[:3]}"
        v = f"{seq:09d}".encode()
        try:
            p.produce(topic, value=v, partition=seq % parts, on_delivery=d)
            seq += 1
        except BufferError:
            p.poll(0.01)
        if seq % 500 == 0:
            p.poll(0)
    in_flight = seq - len(d.acked)
    broker.kill9()
    assert not broker.running(), "broker should have been killed"
    # Collect every report for what was acknowledged before the kill and
    # drop everything else so nothing is retried against the restarted broker.
    p.poll(0.5)
    p.purge(in_queue=True, in_flight=True, blocking=True)
    p.flush(30)
    del p
    acked = list(d.acked)
    assert len(acked) >= kill_after, f"only {len(acked)} records acknowledged before the kill"
    assert in_flight > 0, "nothing was in flight at the kill: the test did not kill under load"

    broker.start()
    kc.wait_for_topic(broker.bootstrap, topic, parts)
    # No clean-shutdown marker after kill -9: every partition's active segment is rescanned.
    assert broker.stderr_text().count("unclean shutdown, recovering segment") >= parts
    recs, marks = kc.consume_all(broker.bootstrap, topic, range(parts))
    kc.assert_contiguous(recs, marks)

    values = collections.Counter(r.value for rs in recs.values() for r in rs)
    dups = [v for v, c in values.items() if c > 1]
    assert not dups, f"duplicated records after recovery: {dups[:10]}"
    lost = []
    for a in acked:
        rs = recs[a.partition]
        if a.offset >= len(rs) or rs[a.offset].value != a.value:
            lost.append((a.partition, a.offset, a.value,
                         rs[a.offset].value if a.offset < len(rs) else None))
    assert not lost, (f"{len(lost)} of {len(acked)} acknowledged records not at their offset "
                      f"after kill -9 (partition, offset, value, found): {lost[:10]}; "
                      f"watermarks {marks}")
    for q in range(parts):
        seqs = [int(r.value) for r in recs[q]]
        assert seqs == sorted(seqs), f"partition {q} out of produce order"
        assert all(s % parts == q for s in seqs), f"partition {q} has foreign records"


def test_corrupted_tail_is_truncated_on_restart(broker):
    topic = "corrupt"
    kc.create_topic(broker.bootstrap, topic, 1)
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks="all", **{"enable.idempotence": False})
    values = []
    for b in range(6):
        for i in range(20):
            v = f"c{b}-{i}".encode()
            values.append(v)
            kc.produce(p, topic, v, d, partition=0)
        kc.flush(p)  # separate batches
    d.assert_no_errors()
    assert sorted(a.offset for a in d.acked) == list(range(len(values)))

    broker.kill9()

    pdir = broker.partition_dir(topic, 0)
    logs = sorted(pdir.glob("*.log"))
    assert logs, f"no .log segment in {pdir}: {sorted(x.name for x in pdir.iterdir())}"
    active = logs[-1]  # names are zero-padded base offsets
    data = bytearray(active.read_bytes())
    batches = parse_log_batches(data)
    assert len(batches) >= 2, f"expected several batches in {active}, parsed {batches}"
    pos, last_base, length = batches[-1]
    assert 0 < last_base < len(values), batches
    end = pos + 12 + length
    assert data[pos + 16] == 2, f"magic of last batch is {data[pos + 16]}, expected 2"
    # Flip a byte inside the records section of the last batch (after the
    # 61-byte header) so its CRC no longer matches.
    victim = pos + 61 + (end - (pos + 61)) // 2
    data[victim] ^= 0xFF
    with open(active, "r+b") as f:
        f.seek(victim)
        f.write(bytes([data[victim]]))

    broker.start()
    kc.wait_for_topic(broker.bootstrap, topic, 1)
    assert kc.watermarks(broker.bootstrap, topic, 0) == (0, last_base)
    recs = kc.consume_range(broker.bootstrap, topic, {0: (0, last_base)})[0]
    assert [r.value for r in recs] == values[:last_base]

    d2 = kc.Deliveries()
    p2 = kc.producer(broker.bootstrap, acks="all", **{"enable.idempotence": False})
    new = [f"after-{i}".encode() for i in range(5)]
    for v in new:
        kc.produce(p2, topic, v, d2, partition=0)
    kc.flush(p2)
    d2.assert_no_errors()
    assert [a.offset for a in d2.acked] == list(range(last_base, last_base + 5))
    recs, marks = kc.consume_all(broker.bootstrap, topic, [0])
    kc.assert_contiguous(recs, marks)
    assert [r.value for r in recs[0]] == values[:last_base] + new
