"""KIP-392 follower fetching with real processes: 3 brokers in racks a, b and c with
`replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector`, an RF3
topic, and a confluent-kafka consumer whose `client.rack` is a follower's rack. The leader
answers its fetches with `preferred_read_replica` = that follower, the consumer reads every
record from the follower (the follower's `tern_fetch_follower_reads_total` moves, the
leader's `tern_fetch_preferred_replica_redirects_total` too), and a consumer in no rack keeps
reading from the leader. Every process is started through cluster.py and killed at
teardown; every wait is bounded (ceilings, not measured thresholds).
"""

import time
import urllib.request

import pytest
from confluent_kafka.admin import NewTopic

import kclients as kc
from cluster import Cluster, metadata
from harness import free_port

OP = 60.0
TOPIC = "racked"
RACKS = {1: "a", 2: "b", 3: "c"}
EXTRA = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
         "replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector"}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def racked(request, tmp_path, tern_bin):
    track = request.node.__dict__.setdefault("_tern_brokers", [])
    c = Cluster(tern_bin, tmp_path / "c", 3, "combined", extra=EXTRA,
                node_extra={i: {"broker.rack": r} for i, r in RACKS.items()}, track=track)
    for n in c.broker_nodes():
        port = free_port()
        n.proc.extra_args += ["--metrics-listener", f"127.0.0.1:{port}"]
        n.metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        c.start()
        yield c
    finally:
        c.cleanup()


def counter(node, name):
    """Sum of a counter family's samples on one broker."""
    text = urllib.request.urlopen(node.metrics_url, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def partition_state(c):
    for b in c.running_brokers():
        md = metadata(b.broker_port, [TOPIC])
        for t in md.topics:
            if t.name == TOPIC and t.partitions:
                p = t.partitions[0]
                return int(p.leader_id), sorted(int(x) for x in p.isr_nodes)
    raise AssertionError("no broker answered Metadata")


def test_consumer_in_a_followers_rack_reads_from_that_follower(racked):
    c = racked
    a = kc.admin(c.bootstrap)
    for f in a.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3)],
                             request_timeout=OP).values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, TOPIC, 1)
    deadline = time.monotonic() + OP
    while True:
        leader, isr = partition_state(c)
        if leader >= 0 and len(isr) == 3:
            break
        assert time.monotonic() < deadline, f"no full ISR: leader {leader}, ISR {isr}"
        time.sleep(0.2)
    p = kc.producer(c.bootstrap, acks="all")
    d = kc.Deliveries()
    n = 300
    for i in range(n):
        kc.produce(p, TOPIC, f"v{i}".encode(), d, partition=0)
    kc.flush(p)
    d.assert_no_errors()
    follower = c.node(next(i for i in RACKS if i != leader))
    lead = c.node(leader)
    served_before = counter(follower, "tern_fetch_follower_reads_total")
    got = kc.consume_range(c.bootstrap, TOPIC, {0: (0, n)}, timeout=OP,
                           **{"client.rack": RACKS[follower.node_id]})
    assert [r.value for r in got[0]] == [f"v{i}".encode() for i in range(n)]
    assert counter(lead, "tern_fetch_preferred_replica_redirects_total") >= 1
    assert counter(follower, "tern_fetch_follower_reads_total") > served_before, (
        "the follower in the consumer's rack served no fetch")
    # A consumer without a rack reads from the leader: the followers serve it nothing.
    others = [c.node(i) for i in RACKS if i != leader]
    before = {o.node_id: counter(o, "tern_fetch_follower_reads_total") for o in others}
    got = kc.consume_range(c.bootstrap, TOPIC, {0: (0, n)}, timeout=OP)
    assert len(got[0]) == n
    assert {o.node_id: counter(o, "tern_fetch_follower_reads_total") for o in others} == before
