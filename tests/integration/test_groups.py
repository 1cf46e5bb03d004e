"""Consumer groups: classic (eager and cooperative) and KIP-848 rebalancing with real clients,
committed offsets across restarts, generation fencing, static membership, lag reporting and
`tern group describe`.

Every wait is bounded; timings (rebalance after a kill) are printed, never asserted.
"""

import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupType, KafkaError, TopicPartition
from confluent_kafka.admin import AclOperation, AdminClient

import kclients as kc
import kwire as kw

SESSION_MS = 6000
# AclEntry.supportedOperations(GROUP) (Kafka 4): all allowed by a broker without an authorizer.
GROUP_OPS = {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE,
             AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
WAIT = 60.0

# Broker settings for these tests: short initial rebalance delay, fast KIP-848 heartbeats.
GROUP_ARGS = ("--group-initial-rebalance-delay-ms", "300")
GROUP_PROPS = (
    "group.consumer.heartbeat.interval.ms=500\n"
    "group.consumer.session.timeout.ms=10000\n"
    "offsets.topic.num.partitions=8\n"
)


@pytest.fixture
def gbroker(broker_factory, tmp_path):
    cfg = tmp_path / "groups.properties"
    cfg.write_text(GROUP_PROPS)
    return broker_factory(*GROUP_ARGS, config=cfg)


def wait_until(pred, timeout=WAIT, what="condition", step=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def produce_n(bootstrap, topic, per_partition, partitions, prefix="r"):
    d = kc.Deliveries()
    p = kc.producer(bootstrap, acks="all")
    for q in range(partitions):
        for i in range(per_partition):
            kc.produce(p, topic, f"{prefix}-{q}-{i}".encode(), d, partition=q)
    kc.flush(p)
    d.assert_no_errors()


# ---------------------------------------------------------------- group member subprocess
MEMBER_SCRIPT = r'''
import json, sys, time
from confluent_kafka import Consumer
bootstrap, group, topic, name, run_for = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
def out(**kw):
    kw["t"] = time.time()
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()
c = Consumer({
    "bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
    "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
    "enable.auto.offset.store": False, "auto.commit.interval.ms": 200,
})
c.subscribe([topic])
last = None
deadline = time.time() + run_for
while time.time() < deadline:
    m = c.poll(0.1)
    if m is not None and not m.error():
        out(ev="msg", p=m.partition(), o=m.offset(), v=m.value().decode())
        c.store_offsets(m)   # at-least-once: committed only after it was processed (printed)
    a = sorted(tp.partition for tp in c.assignment())
    if a != last:
        out(ev="assign", parts=a)
        last = a
c.close()
'''


class Member:
    """A group consumer in its own process (so it can be killed without a LeaveGroup)."""

    def __init__(self, script, bootstrap, group, topic, name, run_for=150):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(script), bootstrap, group, topic, name, str(run_for)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lock = threading.Lock()
        self.assignment = None
        self.assign_time = None
        self.msgs = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if ev["ev"] == "assign":
                    self.assignment = ev["parts"]
                    self.assign_time = ev["t"]
                elif ev["ev"] == "msg":
                    self.msgs.append((ev["p"], ev["o"], ev["v"]))

    def parts(self):
        with self.lock:
            return list(self.assignment or [])

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def disjoint_cover(members, partitions):
    """The members' assignments are disjoint, non-empty and together cover every partition."""
    seen = []
    for m in members:
        ps = m.parts()
        if not ps:
            return False
        seen.extend(ps)
    return sorted(seen) == list(range(partitions))


def test_classic_group_failover_and_scale_out(gbroker, tmp_path):
    topic, group, n = "orders", "g-failover", 6
    kc.create_topic(gbroker.bootstrap, topic, n)
    script = tmp_path / "member.py"
    script.write_text(MEMBER_SCRIPT)

    produced = []
    stop = threading.Event()

    def producer_loop():
        d = kc.Deliveries()
        p = kc.producer(gbroker.bootstrap, acks="all")
        i = 0
        while not stop.is_set():
            v = f"v{i}"
            kc.produce(p, topic, v.encode(), d, partition=i % n)
            produced.append(v)
            i += 1
            p.poll(0)
            time.sleep(0.005)
        kc.flush(p)
        d.assert_no_errors()

    members = [Member(script, gbroker.bootstrap, group, topic, f"m{i}") for i in range(3)]
    prod = threading.Thread(target=producer_loop, daemon=True)
    try:
        wait_until(lambda: disjoint_cover(members, n), what="3 members sharing 6 partitions")
        assert all(len(m.parts()) == 2 for m in members), [m.parts() for m in members]
        prod.start()
        wait_until(lambda: all(m.msgs for m in members), what="every member consuming")

        victim, survivors = members[0], members[1:]
        lost = victim.parts()
        t_kill = time.time()
        victim.kill()   # SIGKILL: no LeaveGroup; the session timeout must notice
        wait_until(lambda: disjoint_cover(survivors, n), timeout=SESSION_MS / 1000 + 30,
                   what="survivors taking over the killed member's partitions")
        took = max(m.assign_time for m in survivors) - t_kill
        print(f"\n[rebalance] classic group, session.timeout.ms={SESSION_MS}: partitions {lost} of the "
              f"killed consumer reassigned after {took:.2f}s")

        fourth = Member(script, gbroker.bootstrap, group, topic, "m3")
        members.append(fourth)
        alive = survivors + [fourth]
        wait_until(lambda: disjoint_cover(alive, n) and all(len(m.parts()) == 2 for m in alive),
                   what="the fourth member getting a share (2/2/2)")
        time.sleep(1.0)
        stop.set()
        prod.join(timeout=60)
        assert not prod.is_alive()
        want = set(produced)

        def consumed():
            got = set()
            for m in members:
                with m.lock:
                    got.update(v for _, _, v in m.msgs)
            return want <= got
        wait_until(consumed, what="every produced record consumed")
        # No gaps per partition: the offsets seen cover 0..end contiguously.
        per = {q: set() for q in range(n)}
        for m in members:
            with m.lock:
                for q, o, _ in m.msgs:
                    per[q].add(o)
        for q, offs in per.items():
            assert offs == set(range(max(offs) + 1)), f"partition {q} has gaps"
    finally:
        stop.set()
        for m in members:
            m.stop()


# -------------------------------------------------------------- in-process consumer helpers
def poll_all(consumers, rounds=1, timeout=0.05, sink=None):
    for _ in range(rounds):
        for c in consumers:
            m = c.poll(timeout)
            if m is not None and not m.error() and sink is not None:
                sink.append((m.partition(), m.offset()))


def assignment_of(c):
    return sorted(tp.partition for tp in c.assignment())


def wait_assignments(consumers, n, what, timeout=WAIT, sizes=None, sink=None):
    def ok():
        poll_all(consumers, sink=sink)
        parts = [assignment_of(c) for c in consumers]
        if any(not p for p in parts) or sorted(sum(parts, [])) != list(range(n)):
            return False
        if sizes is not None and sorted(len(p) for p in parts) != sizes:
            return False
        return parts
    return wait_until(ok, timeout=timeout, what=what, step=0)


def test_cooperative_sticky_librdkafka(gbroker):
    topic, group, n = "coop", "g-coop", 6
    kc.create_topic(gbroker.bootstrap, topic, n)
    produce_n(gbroker.bootstrap, topic, 5, n)
    events = {}

    def make(name):
        events[name] = {"assigned": [], "revoked": []}
        c = Consumer({
            "bootstrap.servers": gbroker.bootstrap, "group.id": group, "client.id": name,
            "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 500, "partition.assignment.strategy": "cooperative-sticky",
        })

        def on_assign(cons, ps):
            events[name]["assigned"].extend(p.partition for p in ps)

        def on_revoke(cons, ps):
            events[name]["revoked"].extend(p.partition for p in ps)

        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        return c

    consumers = []
    try:
        consumers.append(make("c0"))
        wait_assignments(consumers, n, "c0 owning all 6")
        consumers.append(make("c1"))
        wait_assignments(consumers, n, "c0/c1 sharing 3/3", sizes=[3, 3])
        consumers.append(make("c2"))
        parts = wait_assignments(consumers, n, "2/2/2", sizes=[2, 2, 2])
        # Incremental: c0 only ever gave up partitions it does not hold now (it was never asked
        # to revoke everything, as an eager rebalance would).
        kept = set(parts[0])
        assert not kept & set(events["c0"]["revoked"]), events["c0"]
        assert len(events["c0"]["revoked"]) == 4, events["c0"]
        admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
        desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
        assert desc.partition_assignor == "cooperative-sticky"
        # A leaving member's partitions go to the others, again incrementally.
        consumers.pop().close()
        wait_assignments(consumers, n, "3/3 after c2 left", sizes=[3, 3])
    finally:
        for c in consumers:
            c.close()


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_kip848_consumer_protocol(gbroker, assignor):
    topic, group, n = f"kip848-{assignor}", f"g-kip848-{assignor}", 6
    kc.create_topic(gbroker.bootstrap, topic, n)
    produce_n(gbroker.bootstrap, topic, 10, n)

    def make(name):
        c = Consumer({
            "bootstrap.servers": gbroker.bootstrap, "group.id": group, "client.id": name,
            "group.protocol": "consumer", "group.remote.assignor": assignor,
            "auto.offset.reset": "earliest",
        })
        c.subscribe([topic])
        return c

    consumers = [make("k0"), make("k1")]
    seen = []
    try:
        parts = wait_assignments(consumers, n, "two KIP-848 members sharing 6 partitions",
                                 sizes=[3, 3], sink=seen)
        if assignor == "range":
            assert sorted(parts) == [[0, 1, 2], [3, 4, 5]], parts
        wait_until(lambda: (poll_all(consumers, sink=seen), len(set(seen)) >= 6 * 10)[1],
                   what="all 60 records consumed", step=0)
        assert sorted(set(seen)) == sorted((q, i) for q in range(n) for i in range(10))

        consumers.append(make("k2"))
        wait_assignments(consumers, n, "2/2/2 after a third member", sizes=[2, 2, 2])

        # ConsumerGroupDescribe through the admin client.
        admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
        desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
        assert len(desc.members) == 3
        assert desc.type == ConsumerGroupType.CONSUMER, desc.type
        assert desc.authorized_operations is None  # not asked for
        desc = admin.describe_consumer_groups([group], include_authorized_operations=True,
                                              request_timeout=30)[group].result(timeout=30)
        assert set(desc.authorized_operations) == GROUP_OPS, desc.authorized_operations
        described = sorted(tp.partition for m in desc.members for tp in m.assignment.topic_partitions)
        assert described == list(range(n))

        consumers.pop().close()   # leaves (epoch -1)
        wait_assignments(consumers, n, "3/3 after a member left", sizes=[3, 3])
        for c in consumers:
            c.commit(asynchronous=False)
    finally:
        for c in consumers:
            c.close()


def test_offsets_survive_kill9_restart_and_consumer_resumes(gbroker):
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition as KTP

    topic, group, n = "resume", "g-resume", 3
    kc.create_topic(gbroker.bootstrap, topic, n)
    produce_n(gbroker.bootstrap, topic, 30, n)
    commits = {0: 10, 1: 20, 2: 5}
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": SESSION_MS})
    c.subscribe([topic])
    try:
        wait_assignments([c], n, "the consumer owning all partitions")
        c.commit(offsets=[TopicPartition(topic, q, o) for q, o in commits.items()], asynchronous=False)
        got = c.committed([TopicPartition(topic, q) for q in range(n)], timeout=30)
        assert {tp.partition: tp.offset for tp in got} == commits
    finally:
        c.close()

    gbroker.kill9()
    gbroker.start()

    kcons = KafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500,
                          consumer_timeout_ms=2000)
    try:
        first = {}
        deadline = time.monotonic() + WAIT
        while len(first) < n and time.monotonic() < deadline:
            for tp, recs in kcons.poll(timeout_ms=500).items():
                for r in recs:
                    first.setdefault(tp.partition, r.offset)
        assert first == commits, f"resumed at {first}, committed {commits}"
        assert {q: kcons.committed(KTP(topic, q)) for q in range(n)} == commits
    finally:
        kcons.close(autocommit=False)


# ------------------------------------------------------------------------- raw wire helpers
API_OFFSET_COMMIT, API_OFFSET_FETCH, API_FIND_COORDINATOR = 8, 9, 10
API_JOIN, API_HEARTBEAT, API_LEAVE, API_SYNC = 11, 12, 13, 14
API_DESCRIBE_GROUPS, API_OFFSET_DELETE = 15, 47
ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS = 22, 25, 27
MEMBER_ID_REQUIRED, FENCED_INSTANCE_ID, GROUP_SUBSCRIBED_TO_TOPIC = 79, 82, 86


def subscription(topics):
    return kw.i16(0) + kw.array(topics, kw.string) + kw.nbytes(None)


def assignment(parts):
    return kw.i16(0) + kw.array(list(parts.items()), lambda tp: kw.string(tp[0]) + kw.array(tp[1], kw.i32)) + kw.nbytes(None)


def parse_assignment(b):
    if not b:
        return {}
    r = kw.Reader(b)
    r.i16()
    return dict(r.array(lambda r: (r.string(), r.array(lambda r: r.i32()))))


def join_v5_raw_members(conn, group, member_id, topics, instance_id=None):
    """Like join_v5 but keeps member metadata bytes (needed by the leader)."""
    body = (kw.string(group) + kw.i32(SESSION_MS) + kw.i32(30000) + kw.string(member_id)
            + kw.string(instance_id) + kw.string("consumer")
            + kw.array([("range", subscription(topics))], lambda p: kw.string(p[0]) + kw.nbytes(p[1])))
    r = conn.call(API_JOIN, 5, body)
    r.i32()
    out = {"error": r.i16(), "generation": r.i32(), "protocol": r.string(), "leader": r.string(),
           "member_id": r.string()}

    def member(r):
        mid, iid = r.string(), r.string()
        n = r.i32()
        r.pos += max(n, 0)
        return (mid, iid)
    out["members"] = r.array(member)
    return out


def join_member(port, group, topics, instance_id=None):
    """JoinGroup v5 including the MEMBER_ID_REQUIRED round trip; returns (conn, response)."""
    conn = kw.Conn(port, timeout=40)
    first = join_v5_raw_members(conn, group, "", topics, instance_id)
    if instance_id is None:
        assert first["error"] == MEMBER_ID_REQUIRED, first
        assert first["member_id"]
        return conn, first["member_id"]
    return conn, first


def sync_v3(conn, group, generation, member_id, assignments=None, instance_id=None):
    body = (kw.string(group) + kw.i32(generation) + kw.string(member_id) + kw.string(instance_id)
            + kw.array(list((assignments or {}).items()), lambda a: kw.string(a[0]) + kw.nbytes(a[1])))
    r = conn.call(API_SYNC, 3, body)
    r.i32()
    err = r.i16()
    n = r.i32()
    data = r.data[r.pos:r.pos + n] if n > 0 else b""
    return err, parse_assignment(data)


def heartbeat_v2(conn, group, generation, member_id):
    r = conn.call(API_HEARTBEAT, 2, kw.string(group) + kw.i32(generation) + kw.string(member_id))
    r.i32()
    return r.i16()


def commit_v2(conn, group, generation, member_id, topic, offsets):
    body = (kw.string(group) + kw.i32(generation) + kw.string(member_id) + kw.i64(-1)
            + kw.array([topic], lambda t: kw.string(t) + kw.array(
                list(offsets.items()), lambda po: kw.i32(po[0]) + kw.i64(po[1]) + kw.string(""))))
    r = conn.call(API_OFFSET_COMMIT, 2, body)
    res = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16()))))
    return {p: e for _, ps in res for p, e in ps}


def fetch_offsets_v3(conn, group, topic, partitions):
    body = kw.string(group) + kw.array([topic], lambda t: kw.string(t) + kw.array(partitions, kw.i32))
    r = conn.call(API_OFFSET_FETCH, 3, body)
    r.i32()
    res = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i64(), r.string(), r.i16()))))
    return {p: o for _, ps in res for p, o, _, _ in ps}


def test_generation_fencing_and_stale_commit(gbroker):
    topic, group = "fence", "g-fence"
    kc.create_topic(gbroker.bootstrap, topic, 2)
    port = gbroker.port
    a, a_id = join_member(port, group, [topic])
    ja = join_v5_raw_members(a, group, a_id, [topic])
    assert ja["error"] == 0 and ja["leader"] == a_id, ja
    gen1 = ja["generation"]
    err, got = sync_v3(a, group, gen1, a_id, {a_id: assignment({topic: [0, 1]})})
    assert err == 0 and got == {topic: [0, 1]}
    assert commit_v2(a, group, gen1, a_id, topic, {0: 5, 1: 6}) == {0: 0, 1: 0}
    assert heartbeat_v2(a, group, gen1 + 1, a_id) == ILLEGAL_GENERATION
    assert heartbeat_v2(a, group, gen1, "nobody") == UNKNOWN_MEMBER_ID

    # B joins: A learns about the rebalance from its heartbeat and rejoins -> generation 2.
    b, b_id = join_member(port, group, [topic])
    result = {}
    tb = threading.Thread(target=lambda: result.setdefault("b", join_v5_raw_members(b, group, b_id, [topic])))
    tb.start()
    wait_until(lambda: heartbeat_v2(a, group, gen1, a_id) == REBALANCE_IN_PROGRESS,
               what="REBALANCE_IN_PROGRESS on A's heartbeat")
    # A commit is still accepted from the current generation while the group prepares
    # (Kafka commits in PreparingRebalance; only CompletingRebalance answers
    # REBALANCE_IN_PROGRESS).
    assert commit_v2(a, group, gen1, a_id, topic, {1: 8}) == {1: 0}
    assert fetch_offsets_v3(a, group, topic, [0, 1]) == {0: 5, 1: 8}
    ja2 = join_v5_raw_members(a, group, a_id, [topic])
    tb.join(timeout=40)
    jb = result["b"]
    gen2 = ja2["generation"]
    assert ja2["error"] == 0 and jb["error"] == 0 and gen2 == gen1 + 1 == jb["generation"]
    # The stale generation is fenced, for commits and heartbeats alike.
    assert commit_v2(a, group, gen1, a_id, topic, {0: 99}) == {0: ILLEGAL_GENERATION}
    assert commit_v2(a, group, gen2, "stranger", topic, {0: 99}) == {0: UNKNOWN_MEMBER_ID}
    # The new generation before its SyncGroup (CompletingRebalance): REBALANCE_IN_PROGRESS.
    assert commit_v2(a, group, gen2, a_id, topic, {0: 99}) == {0: REBALANCE_IN_PROGRESS}
    leader, other = (a, b) if ja2["leader"] == a_id else (b, a)
    lid, oid = (a_id, b_id) if leader is a else (b_id, a_id)
    ts = threading.Thread(target=lambda: result.setdefault("sync", sync_v3(other, group, gen2, oid)))
    ts.start()
    err, mine = sync_v3(leader, group, gen2, lid,
                        {lid: assignment({topic: [0]}), oid: assignment({topic: [1]})})
    ts.join(timeout=40)
    assert err == 0 and mine == {topic: [0]}
    assert result["sync"] == (0, {topic: [1]})
    assert commit_v2(a, group, gen2, a_id, topic, {0: 7}) == {0: 0}
    assert fetch_offsets_v3(a, group, topic, [0, 1]) == {0: 7, 1: 8}
    a.close()
    b.close()


def test_static_member_restart_keeps_assignment_without_rebalance(gbroker):
    topic, group = "static", "g-static"
    kc.create_topic(gbroker.bootstrap, topic, 2)
    port = gbroker.port
    a = kw.Conn(port, timeout=40)
    b = kw.Conn(port, timeout=40)
    res = {}
    tb = threading.Thread(target=lambda: res.setdefault("b", join_v5_raw_members(b, group, "", [topic], "inst-b")))
    tb.start()
    ja = join_v5_raw_members(a, group, "", [topic], "inst-a")
    tb.join(timeout=40)
    jb = res["b"]
    assert ja["error"] == 0 and jb["error"] == 0 and ja["generation"] == jb["generation"]
    gen = ja["generation"]
    ids = {"inst-a": ja["member_id"], "inst-b": jb["member_id"]}
    leader = ja["leader"]
    plan = {ids["inst-a"]: assignment({topic: [0]}), ids["inst-b"]: assignment({topic: [1]})}
    lconn, oconn = (a, b) if leader == ids["inst-a"] else (b, a)
    oid = ids["inst-b"] if lconn is a else ids["inst-a"]
    ts = threading.Thread(target=lambda: res.setdefault("sync", sync_v3(oconn, group, gen, oid, None)))
    ts.start()
    sync_v3(lconn, group, gen, leader, plan)
    ts.join(timeout=40)

    # inst-b "restarts": a new connection, no member id, same group.instance.id.
    b.close()
    b2 = kw.Conn(port, timeout=40)
    j = join_v5_raw_members(b2, group, "", [topic], "inst-b")
    assert j["error"] == 0 and j["generation"] == gen, j   # no new generation: no rebalance
    assert j["member_id"] != ids["inst-b"]
    err, got = sync_v3(b2, group, gen, j["member_id"], None, "inst-b")
    assert err == 0 and got == {topic: [1]}
    assert heartbeat_v2(a, group, gen, ids["inst-a"]) == 0   # the other member saw nothing
    # The old identity is fenced.
    assert heartbeat_v2(b2, group, gen, ids["inst-b"]) == UNKNOWN_MEMBER_ID
    a.close()
    b2.close()


def uvarint_reader(r):
    shift = n = 0
    while True:
        b = r.i8() & 0xFF
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7


def compact_str(r):
    n = uvarint_reader(r) - 1
    if n < 0:
        return None
    s = r.data[r.pos:r.pos + n].decode()
    r.pos += n
    return s


def test_batched_find_coordinator_and_multi_group_offset_fetch(gbroker):
    topic = "multi"
    kc.create_topic(gbroker.bootstrap, topic, 1)
    with kw.Conn(gbroker.port) as conn:
        # FindCoordinator v4: batched keys (flexible encoding, header v2).
        body = kw.i8(0) + kw.uvarint(3) + kw.compact_string("ga") + kw.compact_string("gb") + kw.uvarint(0)
        r = conn.call(API_FIND_COORDINATOR, 4, body, header_version=2)
        uvarint_reader(r)  # response header tagged fields
        r.i32()
        coords = []
        for _ in range(uvarint_reader(r) - 1):
            key = compact_str(r)
            node, host, port_, err = r.i32(), compact_str(r), r.i32(), r.i16()
            compact_str(r)
            uvarint_reader(r)
            coords.append((key, node, host, port_, err))
        assert [(k, h, p, e) for k, _, h, p, e in coords] == [
            ("ga", "127.0.0.1", gbroker.port, 0), ("gb", "127.0.0.1", gbroker.port, 0)]
        for g, off in (("ga", 3), ("gb", 4)):
            assert commit_v2(conn, g, -1, "", topic, {0: off}) == {0: 0}
        # OffsetFetch v8: two groups in one request.
        grp = lambda g: (kw.compact_string(g) + kw.uvarint(2) + kw.compact_string(topic)
                         + kw.uvarint(2) + kw.i32(0) + kw.uvarint(0) + kw.uvarint(0))
        body = kw.uvarint(4) + grp("ga") + grp("gb") + grp("gnone") + kw.i8(0) + kw.uvarint(0)
        r = conn.call(API_OFFSET_FETCH, 8, body, header_version=2)
        uvarint_reader(r)
        r.i32()
        out = {}
        for _ in range(uvarint_reader(r) - 1):
            g = compact_str(r)
            for _ in range(uvarint_reader(r) - 1):
                compact_str(r)
                for _ in range(uvarint_reader(r) - 1):
                    p, o, _, _, e = r.i32(), r.i64(), r.i32(), compact_str(r), r.i16()
                    uvarint_reader(r)
                    out[g] = (o, e)
                uvarint_reader(r)
            assert r.i16() == 0
            uvarint_reader(r)
        assert out == {"ga": (3, 0), "gb": (4, 0), "gnone": (-1, 0)}


def test_admin_list_describe_delete_and_offset_delete(gbroker):
    topic, other, group = "adm", "adm-other", "g-admin"
    kc.create_topic(gbroker.bootstrap, topic, 2)
    kc.create_topic(gbroker.bootstrap, other, 1)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_MS})
    c.subscribe([topic])
    try:
        wait_assignments([c], 2, "the consumer owning both partitions")
        c.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(other, 0, 2)], asynchronous=False)
        listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
        assert group in {g.group_id for g in listed.valid}
        desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
        assert str(desc.state).upper().endswith("STABLE") and len(desc.members) == 1
        assert desc.type == ConsumerGroupType.CLASSIC, desc.type
        assert desc.authorized_operations is None  # not asked for
        desc = admin.describe_consumer_groups([group], include_authorized_operations=True,
                                              request_timeout=30)[group].result(timeout=30)
        assert set(desc.authorized_operations) == GROUP_OPS, desc.authorized_operations
        # Not deletable while it has a member.
        fut = admin.delete_consumer_groups([group], request_timeout=30)[group]
        with pytest.raises(Exception) as e:
            fut.result(timeout=30)
        assert "NON_EMPTY_GROUP" in str(e.value)
        # OffsetDelete: refused for the subscribed topic, done for the other.
        with kw.Conn(gbroker.port) as conn:
            body = kw.string(group) + kw.array(
                [(topic, [0]), (other, [0])],
                lambda t: kw.string(t[0]) + kw.array(t[1], kw.i32))
            r = conn.call(API_OFFSET_DELETE, 0, body)
            assert r.i16() == 0
            r.i32()
            res = dict(r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16())))))
            assert res == {topic: [(0, GROUP_SUBSCRIBED_TO_TOPIC)], other: [(0, 0)]}
            assert fetch_offsets_v3(conn, group, other, [0]) == {0: -1}
    finally:
        c.close()
    admin.delete_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
    listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
    assert group not in {g.group_id for g in listed.valid}


def test_lag_reporting_and_cli_describe(gbroker, tern_bin):
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.structs import TopicPartition as KTP

    topic, group, n = "lagging", "g-lag", 3
    kc.create_topic(gbroker.bootstrap, topic, n)
    produce_n(gbroker.bootstrap, topic, 10, n)
    commits = {0: 10, 1: 4, 2: 7}
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group, "client.id": "lag-client",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": SESSION_MS})
    c.subscribe([topic])
    try:
        wait_assignments([c], n, "the consumer owning all partitions")
        c.commit(offsets=[TopicPartition(topic, q, o) for q, o in commits.items()], asynchronous=False)
        expected_lag = {q: 10 - o for q, o in commits.items()}

        # Lag from the protocol: DescribeGroups (members, assignment) + OffsetFetch + ListOffsets.
        admin = KafkaAdminClient(bootstrap_servers=gbroker.bootstrap)
        try:
            desc = admin.describe_groups([group])[group]
            assert desc["error"] is None and desc["group_state"] == "Stable", desc
            assert len(desc["members"]) == 1
            ma = desc["members"][0]["member_assignment"]
            assigned = ma.assignment if hasattr(ma, "assignment") else ma["assigned_partitions"]
            flat = []
            for tp in assigned:
                t, ps = (tp["topic"], tp["partitions"]) if isinstance(tp, dict) else (tp[0], tp[1])
                flat.extend(ps)
            assert sorted(flat) == list(range(n)), desc
            offs = admin.list_group_offsets({group: None})[group]
        finally:
            admin.close()
        kcons = KafkaConsumer(bootstrap_servers=gbroker.bootstrap)
        try:
            ends = kcons.end_offsets([KTP(topic, q) for q in range(n)])
        finally:
            kcons.close()
        lag = {tp.partition: ends[tp] - om.offset for tp, om in offs.items() if tp.topic == topic}
        assert lag == expected_lag

        # The CLI prints members, assignments and the same lag.
        out = subprocess.run([str(tern_bin), "group", "describe", group, "--bootstrap-server",
                              gbroker.bootstrap], capture_output=True, text=True, timeout=60)
        print(out.stdout)
        assert out.returncode == 0, out.stderr
        assert "lag-client" in out.stdout and "Stable" in out.stdout
        rows = {}
        for line in out.stdout.splitlines():
            f = line.split()
            if len(f) == 6 and f[0] == topic:
                rows[int(f[1])] = f
        assert sorted(rows) == list(range(n)), out.stdout
        for q in range(n):
            _, _, cur, end, lg, member = rows[q]
            assert (int(cur), int(end), int(lg)) == (commits[q], 10, expected_lag[q])
            assert member != "-"
        assert f"TOTAL-LAG {sum(expected_lag.values())}" in out.stdout
    finally:
        c.close()
