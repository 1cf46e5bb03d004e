"""Issue 11 with real processes: a 3-node cluster replicating an RF3 topic
(min.insync.replicas=2) with an idempotent acks=all confluent-kafka producer. Every
acknowledged record is read back once and in order from every replica (leadership is moved
to each replica in turn by kill -9 of the leader, which also checks that the producer resumes
on the new leader and the ledger holds); kill -9 of a follower shrinks the ISR (Metadata shows
it), writes go on, and the restarted follower rejoins the ISR.

Every process is started through cluster.py and killed at teardown; every wait is bounded
(the bounds are ceilings, not measured thresholds).
"""

import time

import pytest
from confluent_kafka.admin import NewTopic

import kclients as kc
from cluster import metadata

OP = 60.0
TOPIC = "replicated"
# Small session timeout and lag bound so failures are noticed quickly.
EXTRA = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
         "replica.lag.time.max.ms": 3000}

pytestmark = pytest.mark.timeout(300)


def partition_state(c, topic=TOPIC, exclude=()):
    """(leader, leader epoch, isr) of partition 0 as a running broker reports it."""
    last = None
    for b in c.running_brokers(exclude=exclude):
        try:
            md = metadata(b.broker_port, [topic])
        except Exception as e:  # noqa: BLE001 - another broker may answer
            last = repr(e)
            continue
        for t in md.topics:
            if t.name == topic and t.partitions:
                p = t.partitions[0]
                return int(p.leader_id), int(p.leader_epoch), sorted(int(x) for x in p.isr_nodes)
    raise AssertionError(f"no broker answered Metadata: {last}")


def wait_state(c, pred, what, timeout=OP, exclude=()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = partition_state(c, exclude=exclude)
            if pred(*last):
                return last
        except AssertionError as e:
            last = str(e)
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout}s; last state {last}")


def create(c):
    a = kc.admin(c.bootstrap)
    fs = a.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3,
                                   config={"min.insync.replicas": "2"})], request_timeout=OP)
    for f in fs.values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, TOPIC, 1)
    return wait_state(c, lambda l, e, isr: l >= 0 and len(isr) == 3, "RF3 with a full ISR")


class Ledger:
    """An idempotent acks=all producer and the records it got acknowledged, in order."""

    def __init__(self, c):
        self.p = kc.producer(c.bootstrap, acks="all", enable_idempotence=True,
                             message_timeout_ms=120_000, retry_backoff_ms=100)
        self.acked = []
        self.errors = []
        self.n = 0

    def _cb(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.append((msg.offset(), msg.value()))

    def send(self, count):
        for _ in range(count):
            v = f"record-{self.n}".encode()
            self.n += 1
            for _ in range(1000):
                try:
                    self.p.produce(TOPIC, value=v, partition=0, on_delivery=self._cb)
                    break
                except BufferError:
                    self.p.poll(0.05)
            self.p.poll(0)

    def flush(self, timeout=OP * 2):
        left = self.p.flush(timeout)
        assert left == 0, f"{left} records not delivered in {timeout}s"
        assert not self.errors, f"delivery errors: {self.errors[:5]}"


def read_all(bootstrap, end):
    got = kc.consume_range(bootstrap, TOPIC, {0: (0, end)}, timeout=OP)
    return [(r.offset, r.value) for r in got[0]]


def assert_ledger(ledger, records):
    """Every acknowledged record is in `records` once, at its acknowledged offset, and the
    log holds the ledger's values in order with no gaps or duplicates (idempotence)."""
    values = [v for _, v in records]
    assert len(values) == len(set(values)), "a record is in the log twice"
    at = dict(records)
    for off, v in ledger.acked:
        assert at.get(off) == v, f"acknowledged {v!r} at {off}, log has {at.get(off)!r}"
    order = [int(v.split(b"-")[1]) for v in values]
    assert order == sorted(order), "records out of order"
    assert [o for o, _ in records] == list(range(len(records))), "offsets not contiguous"


def log_batches(node):
    """(base offset, last offset delta, CRC) of every batch in a replica's segment files."""
    out = []
    d = node.log_dir / f"{TOPIC}-0"
    for seg in sorted(d.glob("*.log")):
        data = seg.read_bytes()
        at = 0
        while at + 61 <= len(data):
            base = int.from_bytes(data[at:at + 8], "big", signed=True)
            length = int.from_bytes(data[at + 8:at + 12], "big", signed=True)
            if length <= 0 or at + 12 + length > len(data):
                break  # zero padding past the log end, or a write in progress
            crc = data[at + 17:at + 21]
            delta = int.from_bytes(data[at + 23:at + 27], "big", signed=True)
            out.append((base, delta, crc))
            at += 12 + length
    return out


def assert_replicas_identical(c, records, timeout=OP):
    deadline = time.monotonic() + timeout
    while True:
        logs = {n.node_id: log_batches(n) for n in c.broker_nodes()}
        ends = {i: (b[-1][0] + b[-1][1] + 1 if b else 0) for i, b in logs.items()}
        first = next(iter(logs.values()))
        if all(b == first for b in logs.values()) and ends[min(ends)] >= records:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"replica logs differ: log ends {ends}, "
                                 f"batches {[len(b) for b in logs.values()]}")
        time.sleep(0.2)


def test_every_replica_holds_every_acknowledged_record(cluster3):
    c = cluster3
    leader, epoch, _ = create(c)
    ledger = Ledger(c)
    ledger.send(300)
    ledger.flush()
    assert len(ledger.acked) == 300
    assert_ledger(ledger, read_all(c.bootstrap, 300))
    served_by = {leader}
    # Move leadership to every replica: kill -9 the leader mid-load, the producer resumes on
    # the new leader, then the old leader restarts, catches up and rejoins the ISR.
    for round_ in range(2):
        old = c.node(leader)
        ledger.send(200)
        old.kill9()
        leader, epoch, isr = wait_state(
            c, lambda l, e, i, old=old.node_id, ep=epoch: l >= 0 and l != old and e > ep,
            f"a new leader after killing {old.node_id}", exclude=(old.node_id,))
        ledger.send(200)
        ledger.flush()
        total = len(ledger.acked)
        assert total == 300 + 400 * (round_ + 1)
        records = read_all(c.bootstrap, total)
        assert_ledger(ledger, records)
        served_by.add(leader)
        old.restart()
        wait_state(c, lambda l, e, i: len(i) == 3, f"{old.node_id} back in the ISR")
    assert len(served_by) >= 2, f"leaders seen: {served_by}"
    # Every replica's log holds the same batches, byte for byte (the followers append the
    # leader's batches unchanged): the ledger read from the leader is on every replica.
    assert_replicas_identical(c, len(ledger.acked))


def test_dead_follower_leaves_the_isr_and_rejoins(cluster3):
    c = cluster3
    leader, epoch, _ = create(c)
    ledger = Ledger(c)
    ledger.send(100)
    ledger.flush()
    follower = next(n for n in c.broker_nodes() if n.node_id != leader)
    follower.kill9()
    wait_state(c, lambda l, e, isr: follower.node_id not in isr and len(isr) == 2,
               f"ISR without {follower.node_id}", exclude=(follower.node_id,))
    # Writes go on with two in-sync replicas (min.insync.replicas=2).
    ledger.send(200)
    ledger.flush()
    assert len(ledger.acked) == 300
    follower.restart()
    _, _, isr = wait_state(c, lambda l, e, isr: len(isr) == 3,
                           f"{follower.node_id} back in the ISR")
    assert follower.node_id in isr
    assert_ledger(ledger, read_all(c.bootstrap, 300))


def delete_records(c, before):
    """DeleteRecords on partition 0 (the client sends it to the leader): the new log start."""
    from confluent_kafka import TopicPartition
    a = kc.admin(c.bootstrap)
    fs = a.delete_records([TopicPartition(TOPIC, 0, before)], request_timeout=OP)
    res = next(iter(fs.values())).result(timeout=OP)
    return res.low_watermark


def replica_log_start(node):
    """A replica's persisted log start offset (0 when never moved)."""
    f = node.log_dir / f"{TOPIC}-0" / "log-start-offset"
    return int(f.read_text().strip()) if f.exists() else 0


def test_follower_below_the_leaders_log_start_restarts_its_log_there(cluster3):
    """A follower is down while the leader deletes records (DeleteRecords) past the follower's
    log end: on restart its fetch is out of range, it restarts its log empty at the leader's
    log start (Kafka's truncateFullyAndStartAt), catches up and rejoins the ISR, and holds the
    leader's batches from there byte for byte. Twice: at a batch boundary (the log end), then
    inside a batch (the follower restarts at the batch's base, then its log start follows the
    leader's)."""
    c = cluster3
    leader, _, _ = create(c)
    ledger = Ledger(c)
    ledger.send(100)
    ledger.flush()
    follower = next(n for n in c.broker_nodes() if n.node_id != leader)
    for round_ in range(2):
        follower.kill9()
        wait_state(c, lambda l, e, isr: follower.node_id not in isr and len(isr) == 2,
                   f"ISR without {follower.node_id}", exclude=(follower.node_id,))
        ledger.send(300)
        ledger.flush()
        end = len(ledger.acked)
        # Round 0: everything (a batch boundary). Round 1: a few records before the end, most
        # likely inside the producer's last batch (either way the follower must cope).
        target = end if round_ == 0 else end - 3
        assert delete_records(c, target) == target
        follower.start()
        wait_state(c, lambda l, e, isr: len(isr) == 3, f"{follower.node_id} back in the ISR")
        deadline = time.monotonic() + OP
        while replica_log_start(follower) != target:
            assert time.monotonic() < deadline, (
                f"follower log start {replica_log_start(follower)}, leader's {target}")
            time.sleep(0.2)
        ledger.send(50)
        ledger.flush()
        total = len(ledger.acked)
        lead = c.node(partition_state(c)[0])
        deadline = time.monotonic() + OP
        while True:
            theirs = [b for b in log_batches(lead) if b[0] + b[1] >= target]
            mine = log_batches(follower)
            if mine == theirs and mine and mine[-1][0] + mine[-1][1] + 1 == total:
                break
            assert time.monotonic() < deadline, (
                f"follower batches {mine[:3]}..{mine[-1:]} vs leader's {theirs[:3]}..{theirs[-1:]}")
            time.sleep(0.2)
    # Consumers read from the log start on.
    got = kc.consume_range(c.bootstrap, TOPIC, {0: (target, total)}, timeout=OP)
    assert [r.offset for r in got[0]] == list(range(target, total))
