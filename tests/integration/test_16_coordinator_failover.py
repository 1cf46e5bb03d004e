"""Issue 11, replicated `__consumer_offsets` with real processes: a 3-broker cluster
(`--shards 1`) where the offsets topic has replication factor 3. A group consumer
(confluent-kafka, then kafka-python) consumes a topic and commits offsets synchronously as it
goes; the broker coordinating its group (the leader of the group's `__consumer_offsets`
partition, which FindCoordinator names) is killed with kill -9 (and once stopped with SIGTERM).
The group re-forms on the new coordinator, the committed offsets are intact (they were
answered only once on the ISR), and consumption goes on with no record lost and none re-read
except after the last successful commit.

`offsets.commit.timeout.ms`: with a follower of the offsets partition stopped but still in the
ISR (long `replica.lag.time.max.ms` and session timeout), an OffsetCommit answers
COORDINATOR_NOT_AVAILABLE once that timeout passes (1 s here; Kafka's mapping of the
replication timeout), well inside the client's own request deadline, and commits succeed again
once the follower runs.

Each round prints the failover time (kill -> first successful commit on the new coordinator);
it is reported, never asserted. Every process is started through cluster.py and killed at
teardown; every wait is bounded (the bounds are ceilings, not measured thresholds).
"""

import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

import kclients as kc
import kwire
from cluster import Cluster, metadata

OP = 60.0
TOPIC = "events"
PARTITIONS = 3
OFFSETS_PARTITIONS = 3
RECORDS = 3000
# Small offsets segments and an eager cleaner: every replica compacts its copy of
# `__consumer_offsets` while the groups commit, so each coordinator load reads a cleaned log.
EXTRA = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
         "replica.lag.time.max.ms": 3000, "offsets.topic.num.partitions": OFFSETS_PARTITIONS,
         "group.initial.rebalance.delay.ms": 0, "offsets.topic.segment.bytes": 16384,
         "log.cleaner.backoff.ms": 200, "log.cleaner.min.cleanable.ratio": 0.05}

pytestmark = pytest.mark.timeout(600)


def java_hash(s):
    """Java's String.hashCode (over UTF-16 code units), as an unsigned 32-bit value."""
    units = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (h * 31 + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h


def offsets_partition(group):
    return (java_hash(group) & 0x7FFFFFFF) % OFFSETS_PARTITIONS


def offsets_leader(c, group, exclude=()):
    """(leader, ISR) of the group's `__consumer_offsets` partition, from a running broker."""
    p = offsets_partition(group)
    for b in c.running_brokers(exclude=exclude):
        try:
            md = metadata(b.broker_port, ["__consumer_offsets"])
        except Exception:  # noqa: BLE001 - another broker may answer
            continue
        for t in md.topics:
            if t.name == "__consumer_offsets":
                for part in t.partitions:
                    if part.partition_index == p:
                        return int(part.leader_id), sorted(int(x) for x in part.isr_nodes)
    return -1, []


def wait_offsets_leader(c, group, pred, what, exclude=()):
    deadline = time.monotonic() + OP
    last = None
    while time.monotonic() < deadline:
        last = offsets_leader(c, group, exclude)
        if pred(*last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {OP}s; last (leader, isr) {last}")


def coordinator_of(c, group):
    """The coordinator FindCoordinator names (through the admin client's DescribeGroups)."""
    a = kc.admin(c.bootstrap)
    deadline = time.monotonic() + OP
    last = None
    while time.monotonic() < deadline:
        try:
            d = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
            return d.coordinator.id, str(d.state), len(d.members)
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
            time.sleep(0.3)
    raise AssertionError(f"no coordinator for {group}: {last!r}")


def setup_topic(c):
    a = kc.admin(c.bootstrap)
    fs = a.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3)],
                         request_timeout=OP)
    for f in fs.values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, TOPIC, PARTITIONS)
    p = kc.producer(c.bootstrap, acks="all", enable_idempotence=True)
    d = kc.Deliveries()
    for i in range(RECORDS):
        kc.produce(p, TOPIC, f"r{i}".encode(), d, partition=i % PARTITIONS)
    kc.flush(p)
    d.assert_no_errors()
    return {q: RECORDS // PARTITIONS for q in range(PARTITIONS)}


class Tracker:
    """Per partition: the next offset expected and the last successfully committed one.
    A record below the expected offset is a re-read, allowed only at or after the last
    commit; a record above it is a loss."""

    def __init__(self):
        self.position = {}
        self.committed = {q: 0 for q in range(PARTITIONS)}
        self.rereads = 0

    def seen(self, p, offset):
        expected = self.position.get(p, self.committed[p])
        assert offset <= expected, f"partition {p}: got offset {offset}, expected {expected}: lost"
        if offset < expected:
            assert offset >= self.committed[p], (
                f"partition {p}: re-read offset {offset} before the last commit "
                f"{self.committed[p]}")
            self.rereads += 1
        self.position[p] = offset + 1

    def reset_to_committed(self, p):
        self.position[p] = self.committed[p]

    def total(self):
        return sum(self.position.values())


class CkGroup:
    """A confluent-kafka group consumer committing explicit offsets synchronously."""

    def __init__(self, c, group):
        self.t = Tracker()
        self.c = kc.consumer(c.bootstrap, **{
            "group.id": group, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
        self.c.subscribe([TOPIC], on_assign=self._assigned)

    def _assigned(self, consumer, parts):
        # After a rebalance the group resumes at its committed offsets.
        for tp in parts:
            self.t.reset_to_committed(tp.partition)

    def step(self, limit):
        for m in self.c.consume(num_messages=limit, timeout=0.5):
            if m.error() is None:
                self.t.seen(m.partition(), m.offset())

    def commit(self):
        if not self.t.position:
            return False
        offs = [TopicPartition(TOPIC, p, o) for p, o in self.t.position.items()]
        try:
            res = self.c.commit(offsets=offs, asynchronous=False)
        except Exception:  # noqa: BLE001 - coordinator moving: retried by the loop
            return False
        if any(tp.error is not None for tp in res or []):
            return False
        for tp in offs:
            self.t.committed[tp.partition] = tp.offset
        return True

    def close(self):
        self.c.close()


class KpGroup:
    """A kafka-python group consumer committing explicit offsets synchronously."""

    def __init__(self, c, group):
        from kafka import ConsumerRebalanceListener

        self.t = Tracker()
        tracker = self.t

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                pass

            def on_partitions_assigned(self, assigned):
                for tp in assigned:
                    tracker.reset_to_committed(tp.partition)

        self.c = kc.kp_consumer(c.bootstrap, group_id=group, session_timeout_ms=10000,
                                heartbeat_interval_ms=500)
        self.c.subscribe([TOPIC], listener=Listener())

    def step(self, limit):
        got = self.c.poll(timeout_ms=500, max_records=limit)
        for tp, recs in got.items():
            for r in recs:
                self.t.seen(tp.partition, r.offset)

    def commit(self):
        from kafka.structs import OffsetAndMetadata
        from kafka.structs import TopicPartition as KpTp

        if not self.t.position:
            return False
        offs = {KpTp(TOPIC, p): OffsetAndMetadata(o, "", -1) for p, o in self.t.position.items()}
        try:
            self.c.commit(offsets=offs, timeout_ms=15000)
        except Exception:  # noqa: BLE001 - coordinator moving: retried by the loop
            return False
        for tp, om in offs.items():
            self.t.committed[tp.partition] = om.offset
        return True

    def close(self):
        self.c.close()


def committed_offsets(c, group):
    from confluent_kafka import ConsumerGroupTopicPartitions

    a = kc.admin(c.bootstrap)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(TOPIC, q)
                                               for q in range(PARTITIONS)])
    deadline = time.monotonic() + OP
    last = None
    while time.monotonic() < deadline:
        try:
            r = a.list_consumer_group_offsets([req], request_timeout=10)[group].result(timeout=15)
            return {tp.partition: tp.offset for tp in r.topic_partitions}
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
            time.sleep(0.3)
    raise AssertionError(f"OffsetFetch for {group} failed: {last!r}")


def run_failovers(c, make_group, group, faults):
    ends = setup_topic(c)
    total = sum(ends.values())
    g = make_group(c, group)
    times = []
    try:
        # Consume and commit until a share of the records is done, then fault the coordinator.
        for i, fault in enumerate(faults):
            target = total * (i + 1) // (len(faults) + 1)
            deadline = time.monotonic() + OP * 2
            while g.t.total() < target or not g.commit():
                assert time.monotonic() < deadline, f"no progress to {target}: {g.t.position}"
                g.step(40)
            coord, _, _ = coordinator_of(c, group)
            leader, isr = offsets_leader(c, group)
            assert coord == leader, f"FindCoordinator names {coord}, the leader is {leader}"
            assert len(isr) == 3, f"offsets partition ISR {isr}"
            before = dict(g.t.committed)
            victim = c.node(coord)
            t0 = time.monotonic()
            if fault == "kill9":
                victim.kill9()
            else:
                victim.stop()
            # The group's next commit succeeds only on the new coordinator.
            deadline = time.monotonic() + OP * 2
            while True:
                assert time.monotonic() < deadline, f"no commit after {fault} of {coord}"
                g.step(10)
                if g.commit():
                    break
            elapsed = time.monotonic() - t0
            times.append(elapsed)
            print(f"[{group}] {fault} of coordinator {coord}: first commit after "
                  f"{elapsed:.2f}s")
            new_coord, state, members = coordinator_of(c, group)
            assert new_coord != coord, f"coordinator still {coord}"
            assert members == 1, f"group has {members} members on {new_coord} ({state})"
            got = committed_offsets(c, group)
            for q, off in before.items():
                assert got[q] >= off, f"partition {q}: committed {off} before, {got[q]} after"
            victim.start()
            wait_offsets_leader(c, group, lambda l, i: l >= 0 and len(i) == 3,
                                "the restarted broker back in the offsets ISR")
        # Consume the rest: every record once, and the final commit reads back.
        deadline = time.monotonic() + OP * 2
        while g.t.position != ends or g.t.committed != ends:
            assert time.monotonic() < deadline, f"stuck at {g.t.position} of {ends}"
            g.step(100)
            if g.t.position != g.t.committed:
                g.commit()
        assert committed_offsets(c, group) == ends
        print(f"[{group}] re-read records after failovers: {g.t.rereads}; "
              f"failover times {[round(t, 2) for t in times]}")
    finally:
        g.close()
    return times


def test_confluent_group_survives_coordinator_kills(cluster3):
    times = run_failovers(cluster3, CkGroup, "ck-group", ["kill9", "kill9", "sigterm"])
    assert len(times) == 3


def test_kafka_python_group_survives_coordinator_kill(cluster3):
    times = run_failovers(cluster3, KpGroup, "kp-group", ["kill9", "kill9"])
    assert len(times) == 2


COORDINATOR_NOT_AVAILABLE = 15


def raw_commit(port, group, topic, offset, timeout):
    """One OffsetCommit v8 (simple commit: generation -1, no member) straight to `port`;
    returns the partition's error code. `timeout` bounds the wait for the answer."""
    from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse

    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    req = OffsetCommitRequest(group_id=group, generation_id_or_member_epoch=-1, member_id="",
                              group_instance_id=None,
                              topics=[T(name=topic, partitions=[
                                  P(partition_index=0, committed_offset=offset,
                                    committed_leader_epoch=-1, committed_metadata="")])])
    with kwire.Conn(port, timeout=timeout) as conn:
        resp = kwire.kp_call(conn, req, OffsetCommitResponse, 8)
    ((p,),) = [t.partitions for t in resp.topics]
    return p.error_code


def test_commit_fails_after_offsets_commit_timeout(request, tmp_path, tern_bin):
    track = request.node.__dict__.setdefault("_tern_brokers", [])
    extra = {**EXTRA, "offsets.commit.timeout.ms": 1000,
             # A stopped follower stays in the ISR (and its broker unfenced) meanwhile.
             "replica.lag.time.max.ms": 600_000, "broker.session.timeout.ms": 600_000}
    c = Cluster(tern_bin, tmp_path / "c", 3, "combined", extra=extra, track=track)
    try:
        c.start()
        group = "slow-commit"
        a = kc.admin(c.bootstrap)
        a.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3)],
                        request_timeout=OP)[TOPIC].result(timeout=OP)
        kc.wait_for_topic(c.bootstrap, TOPIC, 1)
        # A first commit creates the offsets topic (FindCoordinator) and succeeds.
        cons = kc.consumer(c.bootstrap, **{"group.id": group})
        try:
            deadline = time.monotonic() + OP
            while True:
                try:
                    res = cons.commit(offsets=[TopicPartition(TOPIC, 0, 1)], asynchronous=False)
                    if all(tp.error is None for tp in res):
                        break
                except Exception:  # noqa: BLE001 - offsets topic still being created
                    pass
                assert time.monotonic() < deadline, "no first commit"
                time.sleep(0.3)
        finally:
            cons.close()
        leader, isr = wait_offsets_leader(c, group, lambda l, i: l >= 0 and len(i) == 3,
                                          "a full offsets ISR")
        follower = c.node(next(b for b in isr if b != leader))
        follower.sigstop()
        try:
            # The commit waits for the stopped ISR member until offsets.commit.timeout.ms,
            # then fails; the client's deadline (20 s) is far above it.
            code = raw_commit(c.node(leader).broker_port, group, TOPIC, 2, timeout=20)
            assert code == COORDINATOR_NOT_AVAILABLE, code
        finally:
            follower.sigcont()
        deadline = time.monotonic() + OP
        while (code := raw_commit(c.node(leader).broker_port, group, TOPIC, 3, timeout=20)) != 0:
            assert time.monotonic() < deadline, f"commit still failing with {code}"
            time.sleep(0.3)
        a = kc.admin(c.bootstrap)
        from confluent_kafka import ConsumerGroupTopicPartitions
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(TOPIC, 0)])
        r = a.list_consumer_group_offsets([req], request_timeout=10)[group].result(timeout=15)
        assert [tp.offset for tp in r.topic_partitions] == [3]
    finally:
        c.cleanup()


def offsets_partition_size(node, p):
    """DescribeLogDirs on `node`: the bytes of its replica of `__consumer_offsets`-p."""
    from kafka.protocol.admin import DescribeLogDirsRequest, DescribeLogDirsResponse
    T = DescribeLogDirsRequest.DescribableLogDirTopic
    with kwire.Conn(node.broker_port) as conn:
        resp = kwire.kp_call(conn, DescribeLogDirsRequest(
            topics=[T(topic="__consumer_offsets", partitions=[p])]), DescribeLogDirsResponse, 1)
    sizes = [q.partition_size for r in resp.results for t in r.topics for q in t.partitions]
    return sizes[0] if sizes else None


def test_compacted_offsets_partition_reloads_after_kill(cluster3):
    """Many commits of the same partitions: every replica's cleaner compacts its copy of the
    group's `__consumer_offsets` partition (DescribeLogDirs sizes shrink on all three); then
    the coordinator is killed with kill -9 and the new leader loads the compacted log:
    OffsetFetch returns the latest commits."""
    c = cluster3
    a = kc.admin(c.bootstrap)
    fs = a.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3)],
                         request_timeout=OP)
    for f in fs.values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, TOPIC, PARTITIONS)
    group, p = "compacted-group", offsets_partition("compacted-group")
    consumer = kc.consumer(c.bootstrap, **{"group.id": group})
    rounds = 400
    try:
        for v in range(rounds):
            res = consumer.commit(offsets=[TopicPartition(TOPIC, q, 100 * q + v)
                                           for q in range(PARTITIONS)], asynchronous=False)
            assert all(tp.error is None for tp in res), res
    finally:
        consumer.close()
    latest = {q: 100 * q + rounds - 1 for q in range(PARTITIONS)}
    assert committed_offsets(c, group) == latest
    # 400 batches of 3 commits are ~100 KB; the latest commits and the unclean active segment
    # are a fraction of that.
    written = rounds * 3 * 60
    deadline = time.monotonic() + OP * 2
    while True:
        sizes = {n.node_id: offsets_partition_size(n, p) for n in c.broker_nodes()}
        if all(s is not None and s < written // 3 for s in sizes.values()):
            break
        assert time.monotonic() < deadline, f"replicas of __consumer_offsets-{p} not compacted: {sizes}"
        time.sleep(0.5)
    print(f"__consumer_offsets-{p} sizes after cleaning: {sizes} (commits written: ~{written} B)")
    leader, isr = wait_offsets_leader(c, group, lambda l, i: l >= 0 and len(i) == 3,
                                      "a full offsets ISR")
    c.node(leader).kill9()
    wait_offsets_leader(c, group, lambda l, i: l >= 0 and l != leader,
                        "a new offsets leader", exclude=[leader])
    assert committed_offsets(c, group) == latest
    c.node(leader).start()
    wait_offsets_leader(c, group, lambda l, i: l >= 0 and len(i) == 3,
                        "the restarted broker back in the offsets ISR")
    assert committed_offsets(c, group) == latest
