"""Issue 11, durability settings, with real processes: a 3-node cluster, an RF3 topic with
min.insync.replicas=2, once per `tern.replication.ack.durability` (synced, written):

- acks=all is answered only once the ISR has the record: with both followers stopped
  (SIGSTOP) a produce waits; after SIGCONT it is answered without error.
- The Produce request's timeout_ms is honoured: with both followers stopped, an acks=all
  produce with timeout_ms 2000 gets REQUEST_TIMED_OUT (or NOT_ENOUGH_REPLICAS_AFTER_APPEND)
  well before the old fixed 30 s (the socket timeout is 20 s).
- The high watermark survives restarts: each broker's `replication-offset-checkpoint` holds
  it (periodically and after a clean stop), and after a restart of the whole cluster every
  acknowledged record is readable again.

Every process is started through cluster.py and killed at teardown; every wait is bounded
(the bounds are ceilings, not measured thresholds).
"""

import threading
import time

import pytest
from confluent_kafka.admin import NewTopic

import kclients as kc
import kwire
from cluster import Cluster, metadata

OP = 60.0
TOPIC = "durable"
REQUEST_TIMED_OUT = 7
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=["synced", "written"])
def cluster3(request, tmp_path, tern_bin):
    track = request.node.__dict__.setdefault("_tern_brokers", [])
    # A session timeout well above the SIGSTOP pauses: the stopped followers stay unfenced.
    extra = {"broker.session.timeout.ms": 15000, "broker.heartbeat.interval.ms": 1000,
             # Long enough that stopped followers stay in the ISR during a test step.
             "replica.lag.time.max.ms": 60000,
             "replica.high.watermark.checkpoint.interval.ms": 200,
             "tern.replication.ack.durability": request.param}
    c = Cluster(tern_bin, tmp_path / "c", 3, "combined", extra=extra, track=track)
    try:
        c.start()
        yield c
    finally:
        for n in c.nodes.values():
            if n.running():
                n.sigcont()
        c.cleanup()


def partition_state(c):
    """(leader, isr) of partition 0 as a running broker reports it."""
    last = None
    for b in c.running_brokers():
        try:
            md = metadata(b.broker_port, [TOPIC])
        except Exception as e:  # noqa: BLE001 - another broker may answer
            last = repr(e)
            continue
        for t in md.topics:
            if t.name == TOPIC and t.partitions:
                p = t.partitions[0]
                return int(p.leader_id), sorted(int(x) for x in p.isr_nodes)
    raise AssertionError(f"no broker answered Metadata: {last}")


def wait_full_isr(c):
    deadline = time.monotonic() + OP
    last = None
    while time.monotonic() < deadline:
        try:
            last = partition_state(c)
            if last[0] >= 0 and len(last[1]) == 3:
                return last
        except AssertionError as e:
            last = str(e)
        time.sleep(0.2)
    raise AssertionError(f"no leader with a full ISR within {OP}s; last {last}")


def create(c):
    a = kc.admin(c.bootstrap)
    fs = a.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3,
                                   config={"min.insync.replicas": "2"})], request_timeout=OP)
    for f in fs.values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, TOPIC, 1)
    return wait_full_isr(c)


def produce(port, values, timeout_ms=30_000):
    """One acks=all Produce v3 of `values` to partition 0: (error code, base offset)."""
    batch = kwire.record_batch([(None, v) for v in values])
    with kwire.Conn(port, timeout=20.0) as conn:
        return kwire.produce_v3(conn, TOPIC, 0, batch, acks=-1, timeout_ms=timeout_ms)


def produce_until_ok(port, values):
    deadline = time.monotonic() + OP
    while True:
        err, base = produce(port, values)
        if err == 0:
            return base
        assert time.monotonic() < deadline, f"produce kept failing: error {err}"
        time.sleep(0.2)


def checkpointed_hw(node):
    """The high watermark of TOPIC-0 in the node's replication-offset-checkpoint (or None)."""
    f = node.log_dir / "replication-offset-checkpoint"
    if not f.exists():
        return None
    lines = f.read_text().splitlines()
    assert lines[0] == "0", lines
    assert int(lines[1]) == len(lines) - 2, lines
    for line in lines[2:]:
        topic, partition, hw = line.split(" ")
        if topic == TOPIC and partition == "0":
            return int(hw)
    return None


def wait_checkpoints(c, hw):
    deadline = time.monotonic() + OP
    seen = {}
    while time.monotonic() < deadline:
        seen = {n.node_id: checkpointed_hw(n) for n in c.broker_nodes()}
        if all(v == hw for v in seen.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"checkpointed high watermarks {seen}, expected {hw} everywhere")


def test_acks_all_waits_for_the_isr_and_honours_timeout_ms(cluster3):
    c = cluster3
    leader, isr = create(c)
    lport = c.node(leader).broker_port
    assert produce_until_ok(lport, [b"before"]) == 0
    followers = [c.node(b) for b in isr if b != leader]
    for f in followers:
        f.sigstop()
    try:
        # The request's own timeout: answered with a timeout error, long before 30 s (the
        # socket's 20 s bound fails the test otherwise).
        err, _ = produce(lport, [b"times-out"], timeout_ms=2000)
        assert err in (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND), err
        # A produce with a long timeout is not answered while no follower can have it.
        answer = {}

        def send():
            answer["r"] = produce(lport, [b"waits"], timeout_ms=15_000)

        t = threading.Thread(target=send)
        t.start()
        t.join(1.5)
        assert t.is_alive(), f"acks=all answered while both followers were stopped: {answer}"
    finally:
        for f in followers:
            f.sigcont()
    t.join(20.0)
    assert not t.is_alive(), "no answer after the followers resumed"
    err, base = answer["r"]
    assert err == 0, f"acks=all after SIGCONT answered {err}"
    assert base == 2, base  # "before" at 0, the timed-out record at 1 (it stays in the log)
    got = kc.consume_range(c.bootstrap, TOPIC, {0: (0, 3)}, timeout=OP)
    assert [r.value for r in got[0]] == [b"before", b"times-out", b"waits"]


def test_high_watermark_survives_restart(cluster3):
    c = cluster3
    leader, _ = create(c)
    lport = c.node(leader).broker_port
    values = [f"r{i}".encode() for i in range(50)]
    for i in range(0, 50, 10):
        produce_until_ok(lport, values[i:i + 10])
    # The periodic checkpoint reaches every replica (followers learn the HW from the leader).
    wait_checkpoints(c, 50)
    # kill -9 of everything: the periodic file is what the restarted brokers start from.
    for n in c.broker_nodes():
        n.kill9()
    for n in c.broker_nodes():
        assert checkpointed_hw(n) == 50, (n.node_id, checkpointed_hw(n))
    c.start()
    wait_full_isr(c)
    got = kc.consume_range(c.bootstrap, TOPIC, {0: (0, 50)}, timeout=OP)
    assert [r.value for r in got[0]] == values
    # A clean stop writes the file too (after more records).
    leader, _ = wait_full_isr(c)
    produce_until_ok(c.node(leader).broker_port, [b"last"])
    wait_checkpoints(c, 51)
    # One follower stops cleanly (stopping all three in turn leaves the last without a
    # controller quorum for its controlled shutdown).
    f = next(n for n in c.broker_nodes() if n.node_id != leader)
    f.stop()
    assert checkpointed_hw(f) == 51, (f.node_id, checkpointed_hw(f))
