"""A full disk on one broker of a 3-broker cluster (issue 11's fault suite): node 3's data dir is
a small loop-mounted ext4 (loopfs.py), the others' are on the test's own disk. An RF3 topic of 3
partitions with min.insync.replicas=2 and an idempotent acks=all producer keeping a ledger
(faultledger.py).

A ballast file takes node 3 below its free-space floor (tern.log.dir.min.free.bytes) without
reaching ENOSPC: its heartbeats say so, and the controller moves every leadership it holds to
another in-sync replica; the producer keeps going (no delivery error) while node 3, still a
follower, stays readable. The auto leader rebalance (every 2 s here) does not move a leadership
back while node 3 is full. Then a filler takes the file system to a real ENOSPC and a second
RF3 topic led by node 1 ("bulk") gets a few MiB, more than ext4's per-file preallocation lets
node 3's open segments grow into: node 3's replicated writes fail and are cut back, it drops
out of that partition's ISR, the ledger producer goes on without a delivery error, and node 3
keeps running. The filler and the ballast are removed: node 3 reports room, catches up, the
rebalance brings its preferred leadership back, and every ISR is full. After each step every acknowledged record is read back exactly once, in order.

Node 3 is a combined node; its metadata log is on the test's own disk (`metadata.log.dir`),
since a metadata log write that fails stops the process. Needs root for the loop mount; skipped
otherwise. The cluster is killed before the file system is unmounted. Every wait is bounded.
"""

import time

import pytest
from confluent_kafka.admin import NewTopic

import kclients as kc
import loopfs
from cluster import Cluster, metadata
from faultledger import Ledger

OP = 60.0
TOPIC = "diskfull"
BULK = "bulk"
BULK_VALUE = b"\xb7" * (16 << 10)
BULK_RECORDS = 512  # 8 MiB
PARTITIONS = 3
FULL_NODE = 3
FS_BYTES = 64 << 20
FLOOR = 16 << 20
EXTRA = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
         "replica.lag.time.max.ms": 3000, "group.initial.rebalance.delay.ms": 0,
         "min.insync.replicas": 2, "leader.imbalance.check.interval.seconds": 2,
         "tern.log.dir.min.free.bytes": FLOOR,
         "tern.log.dir.free.space.check.interval.ms": 100}

pytestmark = pytest.mark.timeout(420)


@pytest.fixture
def cluster_with_small_disk(request, tmp_path, tern_bin):
    """The 3-node cluster with node 3's log dir on the loop FS (torn down before it)."""
    with loopfs.mounted(tmp_path, FS_BYTES) as mnt:
        data = mnt / "data"
        data.mkdir()
        track = request.node.__dict__.setdefault("_tern_brokers", [])
        c = Cluster(tern_bin, tmp_path / "c", 3, "combined", extra=EXTRA, track=track,
                    node_extra={FULL_NODE: {"log.dirs": str(data),
                                            "metadata.log.dir": str(tmp_path / "meta3")}})
        try:
            c.start()
            yield c, mnt
        finally:
            c.cleanup()


def states(c, topic=TOPIC, partitions=PARTITIONS):
    """{partition: (leader, preferred replica, sorted isr)} of `topic` as a running broker
    reports it."""
    last = None
    for b in c.running_brokers():
        try:
            md = metadata(b.broker_port, [topic])
        except Exception as e:  # noqa: BLE001 - another broker may answer
            last = repr(e)
            continue
        for t in md.topics:
            if t.name == topic and len(t.partitions) == partitions:
                return {int(p.partition_index): (int(p.leader_id), int(p.replica_nodes[0]),
                                                 sorted(int(x) for x in p.isr_nodes))
                        for p in t.partitions}
    raise AssertionError(f"no broker answered Metadata for {topic}: {last}")


def wait_states(c, pred, what, timeout=OP):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = states(c)
            if pred(last):
                return last
        except AssertionError as e:
            last = str(e)
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s; last state {last}")


def bulk_isr(c):
    """The ISR of BULK's partition as a running broker reports it."""
    return states(c, BULK, 1)[0][2]


def full_isr(s):
    return all(l >= 0 and len(isr) == 3 for l, _, isr in s.values())


def preferred_leaders(s):
    return full_isr(s) and all(l == pref for l, pref, _ in s.values())


def report(ledger, extra=""):
    print(f"\nLEDGER cluster_disk_full: acked={ledger.acked_count()} "
          f"read_back={ledger.totals['read']} verifications={ledger.verifications} "
          f"checked={ledger.totals['checks']} group_reads={ledger.group_reads} "
          f"delivery_errors={len(ledger.errors)}{extra}", flush=True)


def test_full_disk_on_one_broker_moves_its_leaderships_and_it_rejoins(cluster_with_small_disk):
    c, mnt = cluster_with_small_disk
    a = kc.admin(c.bootstrap)
    fs = a.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3,
                                   config={"min.insync.replicas": "2"}),
                          NewTopic(BULK, 1,
                                   replica_assignment=[[1, 2, FULL_NODE]])],
                         request_timeout=OP)
    for f in fs.values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, TOPIC, PARTITIONS)
    s = wait_states(c, preferred_leaders, "a full ISR and the preferred leader everywhere")
    led = [p for p, (l, _, _) in s.items() if l == FULL_NODE]
    assert led, f"node {FULL_NODE} leads none of {s}"

    ledger = Ledger(c.bootstrap, TOPIC, PARTITIONS)
    bulk = kc.producer(c.bootstrap, acks=1)
    bulk_errors = []

    def send_bulk(n):
        for _ in range(n):
            kc.produce(bulk, BULK, BULK_VALUE, lambda e, m: e and bulk_errors.append(e),
                       partition=0)
        bulk.flush(OP)
        assert not bulk_errors, bulk_errors

    send_bulk(4)  # node 3 holds a segment of it before its disk fills
    ledger.send(300)
    ledger.flush()
    ledger.verify("before the disk fills")

    # Below the floor, with room left for what follows (no ENOSPC: see the module doc).
    room = loopfs.free_bytes(mnt)
    assert room > FLOOR + 8 * loopfs.MIB, f"only {room} bytes free on the small file system"
    ballast = mnt / "ballast"
    ledger.send(200)  # in flight while the disk fills
    loopfs.write_ballast(ballast, room - FLOOR // 2)
    assert loopfs.free_bytes(mnt) < FLOOR
    s = wait_states(c, lambda s: all(l >= 0 and l != FULL_NODE for l, _, _ in s.values()),
                    f"every leadership off node {FULL_NODE}")
    moved_to = sorted({s[p][0] for p in led})
    ledger.send(600)
    ledger.flush()  # no delivery error: the partitions stay writable
    ledger.verify(f"node {FULL_NODE} below its floor")
    # Several rebalance checks later, nothing went back to the full broker.
    time.sleep(5)
    s = states(c)
    assert all(l != FULL_NODE for l, _, _ in s.values()), f"a leadership went back: {s}"
    ledger.send(200)
    ledger.flush()
    ledger.verify(f"node {FULL_NODE} below its floor, after rebalance checks")

    # A real ENOSPC: node 3's replicated writes of the bulk topic fail (the log cuts them
    # back), it falls out of that ISR after replica.lag.time.max.ms; the ledger producer goes
    # on (acks=all with nodes 1 and 2 whenever node 3 lags there too).
    filler = mnt / "filler"
    loopfs.fill_until_enospc(filler)
    ledger.send(300)
    send_bulk(BULK_RECORDS)
    ledger.send(300)
    ledger.flush()  # no delivery error
    deadline = time.monotonic() + OP
    while FULL_NODE in bulk_isr(c):
        assert time.monotonic() < deadline, f"node {FULL_NODE} still in the {BULK} ISR"
        time.sleep(0.1)
    ledger.send(200)
    ledger.flush()
    ledger.verify(f"node {FULL_NODE} out of space")
    full = c.node(FULL_NODE)
    assert full.proc.proc.poll() is None, f"node {FULL_NODE} exited on ENOSPC"
    assert "disk full at offset" in full.proc.stderr_text(), "no write hit ENOSPC"
    loopfs.remove_filler(filler)

    # Space is back: node 3 catches up, the preferred leaderships return, every ISR is full.
    ballast.unlink()
    s = wait_states(c, preferred_leaders,
                    f"node {FULL_NODE} leading its preferred partitions {led} again")
    deadline = time.monotonic() + OP
    while FULL_NODE not in bulk_isr(c):
        assert time.monotonic() < deadline, f"node {FULL_NODE} not back in the {BULK} ISR"
        time.sleep(0.1)
    ledger.send(300)
    ledger.flush()
    counts = ledger.verify("after space came back")
    report(ledger, f" led_by_full_node={led} moved_to={moved_to}")
    assert counts["acked"] == 2400
    assert not ledger.group_failures, ledger.group_failures
    assert "reports its log dir below the free-space floor" in "".join(
        n.proc.stderr_text() for n in c.nodes.values())
