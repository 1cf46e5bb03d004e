"""The API version matrix: every (API, version) pair the broker advertises in ApiVersions gets a
real request at that version, built and decoded by kio (an independent codec generated from
Apache Kafka's JSON schemas), against real data: a topic with partitions holding records, a
classic group with a joined member and committed offsets, a KIP-848 group with an assigned
member, topic configs. Destructive APIs act on scratch objects made for that one pair.

The parametrization comes from the broker itself: at collection time a throw-away broker is
asked for its ApiVersions table, so a newly advertised version is tested without editing this
file; an advertised API without a request factory below fails (never skips). The matrix broker
is checked to advertise the same table.
"""

import pathlib
import tempfile
import uuid

import pytest

import kmatrix
from harness import Broker, resolve_tern_bin
from kmatrix import KioConn, request

TOPIC = "mx"
PARTITIONS = 3
BATCHES = 3  # per partition: offsets 0-3, 4-7, 8-11
BATCH_RECORDS = 4
T0 = 1_700_000_000_000  # timestamp of the first batch; each next batch +1000 ms
GROUP = "mx-group"
CGROUP = "mx-cgroup"
COMMITTED = {0: 3, 1: 6, 2: 9}
PRODUCE_TOPIC = "mx-produce"
CLIENT_HOST = "/127.0.0.1"  # how Kafka reports a member's address
BROKER_ARGS = ("--group-initial-rebalance-delay-ms", "0")

API_VERSIONS = 18
E_NONE = 0
E_UNKNOWN_TOPIC_OR_PARTITION = 3
E_MEMBER_ID_REQUIRED = 79


# ---------------------------------------------------------------- the table
def advertised_table(port):
    """{api_key: (min, max)} from ApiVersions v0 (which every broker answers)."""
    with KioConn(port) as c:
        r = c.call(request(API_VERSIONS, 0, {}))
    assert r.error_code == 0, r
    return {int(a.api_key): (int(a.min_version), int(a.max_version)) for a in r.api_keys}


_TABLE = None


def collection_table():
    global _TABLE
    if _TABLE is None:
        binary = resolve_tern_bin()
        with tempfile.TemporaryDirectory(prefix="tern-matrix-collect-") as d:
            b = Broker(binary, pathlib.Path(d), name="collect")
            b.start()
            try:
                _TABLE = advertised_table(b.port)
            finally:
                b.cleanup()
    return _TABLE


def pytest_generate_tests(metafunc):
    if "api_version_pair" in metafunc.fixturenames:
        table = collection_table()
        pairs = [(k, v) for k, (lo, hi) in sorted(table.items()) for v in range(lo, hi + 1)]
        metafunc.parametrize("api_version_pair", pairs,
                             ids=[f"{FACTORY_NAMES.get(k, k)}-v{v}" for k, v in pairs])


# ------------------------------------------------------------------- world
class World:
    """The broker and the data every pair is checked against."""

    def __init__(self, broker, table):
        self.broker = broker
        self.port = broker.port
        self.table = table
        self.conn = KioConn(self.port)
        self.scratch = 0
        self.node_id = None
        self.topic_id = None
        self.produce_topic_id = None
        self.member_id = None
        self.generation = None
        self.cmember_id = None
        self.cepoch = None

    def newest(self, api_key):
        return self.table[api_key][1]

    def admin(self, api_key, spec):
        """A request at the newest advertised version (setup and verification)."""
        try:
            return self.conn.call(request(api_key, self.newest(api_key), spec))
        except kmatrix.WireError:
            self.conn.close()
            self.conn = KioConn(self.port)  # the next call starts on a clean connection
            raise

    def keep_alive(self):
        """Heartbeats both group members, so a slow or failing pair cannot expire them."""
        r = self.admin(12, {"group_id": GROUP, "generation_id": self.generation,
                            "member_id": self.member_id})
        assert r.error_code == E_NONE, f"classic member lost: {r}"
        r = self.admin(68, {"group_id": CGROUP, "member_id": self.cmember_id,
                            "member_epoch": self.cepoch})
        assert r.error_code == E_NONE, f"KIP-848 member lost: {r}"
        self.cepoch = r.member_epoch

    def name(self, what):
        self.scratch += 1
        return f"mx-{what}-{self.scratch}"

    # -- helpers at the newest version
    def create_topic(self, name, partitions=1, configs=()):
        r = self.admin(19, {"topics": [{
            "name": name, "num_partitions": partitions, "replication_factor": 1,
            "assignments": [], "configs": [{"name": k, "value": v} for k, v in configs]}],
            "timeout": 30_000})
        assert r.topics[0].error_code == E_NONE, r
        return r.topics[0]

    def metadata(self, names):
        return self.admin(3, {"topics": [{"name": n} for n in names],
                              "allow_auto_topic_creation": False})

    def produce(self, topic, partition, count, timestamp_ms=None, topic_id=None):
        from kwire import record_batch
        if topic_id is None:
            # Produce v13+ names topics by id only.
            topic_id = {t.name: getattr(t, "topic_id", None)
                        for t in self.metadata([topic]).topics}[topic]
        batch = record_batch([(f"k{i}".encode(), f"v{i}".encode()) for i in range(count)],
                             timestamp_ms=timestamp_ms)
        r = self.admin(0, {"acks": -1, "timeout": 30_000, "topic_data": [{
            "name": topic, "topic_id": topic_id,
            "partition_data": [{"index": partition, "records": batch}]}]})
        p = r.responses[0].partition_responses[0]
        assert p.error_code == E_NONE, r
        return p.base_offset

    def list_offset(self, topic, partition, timestamp):
        r = self.admin(2, {"replica_id": -1, "isolation_level": 0, "timeout": 10_000,
                           "topics": [{"name": topic, "partitions": [
                               {"partition_index": partition, "timestamp": timestamp}]}]})
        p = r.topics[0].partitions[0]
        assert p.error_code == E_NONE, r
        return p.offset

    def join_alone(self, group, session_ms=120_000):
        """Joins `group` as its only member and syncs; returns (member_id, generation)."""
        spec = {"group_id": group, "session_timeout": session_ms, "rebalance_timeout": 30_000,
                "member_id": "", "protocol_type": "consumer",
                "protocols": [{"name": "range", "metadata": subscription([TOPIC])}]}
        r = self.admin(11, spec)
        if r.error_code == E_MEMBER_ID_REQUIRED:
            r = self.admin(11, dict(spec, member_id=r.member_id))
        assert r.error_code == E_NONE, r
        s = self.admin(14, {"group_id": group, "generation_id": r.generation_id,
                            "member_id": r.member_id, "protocol_type": "consumer",
                            "protocol_name": "range", "assignments": [
                                {"member_id": r.member_id,
                                 "assignment": assignment({TOPIC: list(range(PARTITIONS))})}]})
        assert s.error_code == E_NONE, s
        return r.member_id, r.generation_id

    def commit_simple(self, group, offsets, topic=TOPIC):
        """Commits offsets for a group without members (generation -1)."""
        r = self.admin(8, {"group_id": group, "generation_id_or_member_epoch": -1,
                           "member_id": "", "topics": [{"name": topic, "partitions": [
                               {"partition_index": p, "committed_offset": o,
                                "committed_metadata": ""} for p, o in offsets.items()]}]})
        for t in r.topics:
            for p in t.partitions:
                assert p.error_code == E_NONE, r

    def fetch_offsets(self, group, topic=TOPIC, partitions=range(PARTITIONS)):
        """{partition: (offset, metadata)} committed by `group` (OffsetFetch, newest)."""
        topics = [{"name": topic, "partition_indexes": list(partitions)}]
        r = self.admin(9, {"group_id": group, "topics": topics,
                           "groups": [{"group_id": group, "topics": topics}]})
        groups = getattr(r, "groups", None)
        ts = groups[0].topics if groups else r.topics
        return {p.partition_index: (p.committed_offset, p.metadata)
                for t in ts for p in t.partitions}

    def topic_config(self, topic, key):
        r = self.admin(32, {"resources": [{"resource_type": 2, "resource_name": topic,
                                           "configuration_keys": [key]}]})
        res = r.results[0]
        assert res.error_code == E_NONE, r
        return {c.name: c.value for c in res.configs}.get(key)


def subscription(topics):
    """ConsumerProtocolSubscription v0 bytes."""
    import struct
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def assignment(parts):
    """ConsumerProtocolAssignment v0 bytes for {topic: [partitions]}."""
    import struct
    out = struct.pack(">hi", 0, len(parts))
    for t, ps in parts.items():
        out += struct.pack(">h", len(t)) + t.encode() + struct.pack(">i", len(ps))
        out += b"".join(struct.pack(">i", p) for p in ps)
    return out + struct.pack(">i", -1)


def setup_world(w):
    meta = w.metadata([])
    w.node_id = meta.brokers[0].node_id
    w.create_topic(TOPIC, PARTITIONS, configs=[("retention.ms", "604800000")])
    w.create_topic(PRODUCE_TOPIC, 1)
    meta = w.metadata([TOPIC, PRODUCE_TOPIC])
    ids = {t.name: getattr(t, "topic_id", None) for t in meta.topics}
    w.topic_id, w.produce_topic_id = ids[TOPIC], ids[PRODUCE_TOPIC]
    for p in range(PARTITIONS):
        for b in range(BATCHES):
            base = w.produce(TOPIC, p, BATCH_RECORDS, timestamp_ms=T0 + 1000 * b,
                             topic_id=w.topic_id)
            assert base == b * BATCH_RECORDS
    # A classic group with a joined, synced member and committed offsets.
    w.member_id, w.generation = w.join_alone(GROUP)
    r = w.admin(8, {"group_id": GROUP, "generation_id_or_member_epoch": w.generation,
                    "member_id": w.member_id, "topics": [{"name": TOPIC, "partitions": [
                        {"partition_index": p, "committed_offset": o,
                         "committed_metadata": "setup"} for p, o in COMMITTED.items()]}]})
    assert all(p.error_code == E_NONE for t in r.topics for p in t.partitions), r
    # A KIP-848 group: one member subscribed to the topic, heartbeating until it is assigned.
    v = w.newest(68)
    mid = str(uuid.uuid4()) if v >= 1 else ""
    r = w.admin(68, {"group_id": CGROUP, "member_id": mid, "member_epoch": 0,
                     "rebalance_timeout": 30_000, "subscribed_topic_names": [TOPIC],
                     "server_assignor": None, "topic_partitions": []})
    assert r.error_code == E_NONE, r
    w.cmember_id, w.cepoch = r.member_id, r.member_epoch
    got = set()
    for _ in range(50):
        if r.assignment is not None:
            got = {(tp.topic_id, p) for tp in r.assignment.topic_partitions for p in tp.partitions}
        if len(got) == PARTITIONS:
            break
        r = w.admin(68, {"group_id": CGROUP, "member_id": w.cmember_id,
                         "member_epoch": w.cepoch,
                         "topic_partitions": [{"topic_id": w.topic_id,
                                               "partitions": sorted(p for _, p in got)}]})
        assert r.error_code == E_NONE, r
        w.cepoch = r.member_epoch
    assert got == {(w.topic_id, p) for p in range(PARTITIONS)}, got


@pytest.fixture(scope="module")
def world(tmp_path_factory, tern_bin):
    b = Broker(tern_bin, tmp_path_factory.mktemp("matrix"), name="matrix",
               extra_args=BROKER_ARGS)
    b.start()
    try:
        w = World(b, advertised_table(b.port))
        assert w.table == collection_table(), "the matrix broker advertises another table"
        setup_world(w)
        yield w
        w.conn.close()
    finally:
        problem = b.cleanup()
    assert problem is None, f"matrix broker: {problem}\n{b.stderr_tail(30)}"


# --------------------------------------------------------------- factories
# Each factory: (world, version) -> (request description, check(response)), or a list of such
# cases. The description is the union of the fields of every version; `kmatrix.build` keeps
# the version's own.
FACTORIES = {}
FACTORY_NAMES = {}


def factory(api_key, name):
    def register(fn):
        FACTORIES[api_key] = fn
        FACTORY_NAMES[api_key] = name
        return fn
    return register


def ok(code, what):
    assert code == E_NONE, f"{what}: error code {code!r}"


@factory(0, "Produce")
def produce_factory(w, v):
    from kwire import record_batch
    before = w.list_offset(PRODUCE_TOPIC, 0, -1)
    spec = {"transactional_id": None, "acks": -1, "timeout": 30_000, "topic_data": [{
        "name": PRODUCE_TOPIC, "topic_id": w.produce_topic_id, "partition_data": [
            {"index": 0, "records": record_batch([(b"k", b"a"), (b"k", b"b")])}]}]}

    def check(r):
        p = r.responses[0].partition_responses[0]
        ok(p.error_code, "partition")
        assert p.index == 0
        assert p.base_offset == before, (p.base_offset, before)
        assert w.list_offset(PRODUCE_TOPIC, 0, -1) == before + 2
    return spec, check


@factory(1, "Fetch")
def fetch_factory(w, v):
    spec = {"replica_id": -1, "max_wait": 0, "min_bytes": 1, "max_bytes": 1 << 20,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": TOPIC, "topic_id": w.topic_id, "partitions": [
                {"partition": p, "fetch_offset": 4, "partition_max_bytes": 1 << 20,
                 "log_start_offset": -1} for p in range(PARTITIONS)]}],
            "forgotten_topics_data": [], "rack_id": ""}

    def check(r, committed=False):
        ok(getattr(r, "error_code", 0), "top level")
        (t,) = r.responses
        if hasattr(t, "topic_id") and not hasattr(t, "topic"):
            assert t.topic_id == w.topic_id
        else:
            assert t.topic == TOPIC
        assert sorted(p.partition_index for p in t.partitions) == list(range(PARTITIONS))
        for p in t.partitions:
            ok(p.error_code, f"partition {p.partition_index}")
            assert p.high_watermark == BATCHES * BATCH_RECORDS
            if committed:
                assert p.last_stable_offset == BATCHES * BATCH_RECORDS
            bs = kmatrix.batches(p.records)
            assert bs, f"partition {p.partition_index}: no records"
            assert [b[0] for b in bs] == [4, 8][:len(bs)], bs
            assert bs[0][1] == BATCH_RECORDS and bs[0][2] == T0 + 1000
    return [(spec, check),
            (dict(spec, isolation_level=1), lambda r: check(r, committed=True))]


@factory(2, "ListOffsets")
def list_offsets_factory(w, v):
    # (partition, timestamp, expected offset, expected timestamp or None)
    cases = [(0, -2, 0, None), (1, -1, BATCHES * BATCH_RECORDS, None), (2, T0 + 1000, 4, T0 + 1000)]
    if v >= 7:
        # KIP-734 max timestamp (-3): the record with the largest timestamp (last batch).
        cases[0] = (0, -3, None, T0 + 1000 * (BATCHES - 1))
    spec = {"replica_id": -1, "isolation_level": 0, "timeout": 10_000, "topics": [{
        "name": TOPIC, "partitions": [
            {"partition_index": p, "current_leader_epoch": -1, "timestamp": ts, "max_num_offsets": 1}
            for p, ts, _, _ in cases]}]}

    def check(r):
        (t,) = r.topics
        assert t.name == TOPIC
        got = {p.partition_index: p for p in t.partitions}
        for p, _, offset, ts in cases:
            ok(got[p].error_code, f"partition {p}")
            off = got[p].offset if hasattr(got[p], "offset") else got[p].old_style_offsets[0]
            if offset is None:
                first = (BATCHES - 1) * BATCH_RECORDS
                assert first <= off < BATCHES * BATCH_RECORDS, (p, off)
            else:
                assert off == offset, (p, off, offset)
            if ts is not None and hasattr(got[p], "timestamp"):
                assert got[p].timestamp == ts
    return spec, check


@factory(23, "OffsetForLeaderEpoch")
def offset_for_leader_epoch_factory(w, v):
    # The newest epoch at or below a huge one is the log's latest: it ends at the log end.
    spec = {"replica_id": -1, "topics": [{"topic": TOPIC, "partitions": [
        {"partition": p, "current_leader_epoch": -1, "leader_epoch": 2**31 - 1}
        for p in range(PARTITIONS)]}]}

    def check(r):
        (t,) = r.topics
        assert t.topic == TOPIC
        assert sorted(p.partition for p in t.partitions) == list(range(PARTITIONS))
        for p in t.partitions:
            ok(p.error_code, f"partition {p.partition}")
            assert p.leader_epoch >= 0, p
            assert p.end_offset == BATCHES * BATCH_RECORDS, p
    return spec, check


@factory(3, "Metadata")
def metadata_factory(w, v):
    spec = {"topics": [{"name": TOPIC}], "allow_auto_topic_creation": False,
            "include_topic_authorized_operations": False}

    def check(r):
        assert [b.node_id for b in r.brokers] == [w.node_id]
        assert r.brokers[0].port == w.port
        (t,) = [t for t in r.topics if t.name == TOPIC]
        ok(t.error_code, "topic")
        assert t.name == TOPIC
        if hasattr(t, "topic_id"):
            assert t.topic_id == w.topic_id
        assert sorted(p.partition_index for p in t.partitions) == list(range(PARTITIONS))
        for p in t.partitions:
            ok(p.error_code, "partition")
            assert p.leader_id == w.node_id and list(p.replica_nodes) == [w.node_id]

    def check_all(r):
        names = {t.name for t in r.topics}
        assert {TOPIC, PRODUCE_TOPIC} <= names, names
        check(r)
    # topics=null means every topic (v1+).
    return [(spec, check), (dict(spec, topics=None), check_all)]


@factory(8, "OffsetCommit")
def offset_commit_factory(w, v):
    tag = f"matrix-v{v}"
    spec = {"group_id": GROUP, "generation_id_or_member_epoch": w.generation,
            "member_id": w.member_id, "group_instance_id": None, "retention_time": -1,
            "topics": [{"name": TOPIC, "topic_id": w.topic_id, "partitions": [
                {"partition_index": p, "committed_offset": o, "committed_leader_epoch": -1,
                 "committed_timestamp": -1, "committed_metadata": tag}
                for p, o in COMMITTED.items()]}]}

    def check(r):
        (t,) = r.topics
        assert sorted(p.partition_index for p in t.partitions) == list(range(PARTITIONS))
        for p in t.partitions:
            ok(p.error_code, f"partition {p.partition_index}")
        got = w.fetch_offsets(GROUP)
        assert got == {p: (o, tag) for p, o in COMMITTED.items()}, got
    return spec, check


@factory(9, "OffsetFetch")
def offset_fetch_factory(w, v):
    topics = [{"name": TOPIC, "topic_id": w.topic_id,
               "partition_indexes": list(range(PARTITIONS))}]
    spec = {"group_id": GROUP, "topics": topics, "require_stable": False,
            "groups": [{"group_id": GROUP, "topics": topics}]}

    def check(r):
        groups = getattr(r, "groups", None)
        if groups is not None:
            (g,) = groups
            ok(g.error_code, "group")
            ts = g.topics
        else:
            ok(getattr(r, "error_code", 0), "top level")
            ts = r.topics
        (t,) = ts
        assert t.name == TOPIC
        got = {p.partition_index: p for p in t.partitions}
        assert sorted(got) == list(range(PARTITIONS))
        for p, o in COMMITTED.items():
            ok(got[p].error_code, f"partition {p}")
            assert got[p].committed_offset == o
    cases = [(spec, check)]
    if v >= 2:
        # topics=null: every committed offset of the group.
        cases.append((dict(spec, topics=None, groups=[{"group_id": GROUP, "topics": None}]),
                      check))
    return cases


@factory(10, "FindCoordinator")
def find_coordinator_factory(w, v):
    spec = {"key": GROUP, "key_type": 0, "coordinator_keys": [GROUP]}

    def check(r):
        cs = getattr(r, "coordinators", None)
        c = cs[0] if cs is not None and hasattr(cs[0], "key") else r
        if cs is not None:
            assert len(cs) == 1 and cs[0].key == GROUP
        ok(c.error_code, "coordinator")
        assert (c.node_id, c.host, c.port) == (w.node_id, "127.0.0.1", w.port)
    return spec, check


@factory(11, "JoinGroup")
def join_group_factory(w, v):
    group = w.name(f"join-v{v}")
    spec = {"group_id": group, "session_timeout": 30_000, "rebalance_timeout": 30_000,
            "member_id": "", "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": subscription([TOPIC])}],
            "reason": "matrix"}

    def check(r):
        if r.error_code == E_MEMBER_ID_REQUIRED:
            # v4+: the first join returns the member id to rejoin with (KIP-394).
            assert v >= 4 and r.member_id
            r = w.conn.call(request(11, v, dict(spec, member_id=r.member_id)))
        ok(r.error_code, "join")
        assert r.generation_id >= 1
        assert r.leader == r.member_id and r.member_id
        assert [m.member_id for m in r.members] == [r.member_id]
        assert r.members[0].metadata == subscription([TOPIC])
        if hasattr(r, "protocol_type") and r.protocol_type is not None:
            assert r.protocol_type == "consumer"
        assert r.protocol_name == "range"
    return spec, check


@factory(12, "Heartbeat")
def heartbeat_factory(w, v):
    spec = {"group_id": GROUP, "generation_id": w.generation, "member_id": w.member_id}
    return spec, lambda r: ok(r.error_code, "heartbeat")


@factory(13, "LeaveGroup")
def leave_group_factory(w, v):
    group = w.name(f"leave-v{v}")
    member, _ = w.join_alone(group)
    spec = {"group_id": group, "member_id": member,
            "members": [{"member_id": member, "reason": "matrix"}]}

    def check(r):
        ok(r.error_code, "leave")
        if hasattr(r, "members"):
            assert [(m.member_id, m.error_code) for m in r.members] == [(member, E_NONE)]
        d = w.admin(15, {"groups": [group]})
        assert d.groups[0].group_state == "Empty" and not d.groups[0].members, d
    return spec, check


@factory(14, "SyncGroup")
def sync_group_factory(w, v):
    group = w.name(f"sync-v{v}")
    jspec = {"group_id": group, "session_timeout": 30_000, "rebalance_timeout": 30_000,
             "member_id": "", "protocol_type": "consumer",
             "protocols": [{"name": "range", "metadata": subscription([TOPIC])}]}
    j = w.admin(11, jspec)
    if j.error_code == E_MEMBER_ID_REQUIRED:
        j = w.admin(11, dict(jspec, member_id=j.member_id))
    ok(j.error_code, "join")
    mine = assignment({TOPIC: [0, 2]})
    spec = {"group_id": group, "generation_id": j.generation_id, "member_id": j.member_id,
            "protocol_type": "consumer", "protocol_name": "range",
            "assignments": [{"member_id": j.member_id, "assignment": mine}]}

    def check(r):
        ok(r.error_code, "sync")
        assert r.assignment == mine
        if getattr(r, "protocol_name", None) is not None:
            assert (r.protocol_type, r.protocol_name) == ("consumer", "range")
    return spec, check


@factory(15, "DescribeGroups")
def describe_groups_factory(w, v):
    spec = {"groups": [GROUP, CGROUP], "include_authorized_operations": False}

    def check(r):
        g, cg = r.groups
        ok(g.error_code, "classic group")
        assert (g.group_id, g.group_state, g.protocol_type, g.protocol_data) == (
            GROUP, "Stable", "consumer", "range")
        (m,) = g.members
        assert m.member_id == w.member_id and m.client_id == kmatrix.CLIENT_ID
        assert m.client_host == CLIENT_HOST
        assert m.member_metadata == subscription([TOPIC])
        assert m.member_assignment == assignment({TOPIC: list(range(PARTITIONS))})
        ok(cg.error_code, "consumer group")
        assert cg.group_id == CGROUP and [m.member_id for m in cg.members] == [w.cmember_id]
        assert cg.members[0].client_host == CLIENT_HOST
    return spec, check


@factory(16, "ListGroups")
def list_groups_factory(w, v):
    spec = {"states_filter": [], "types_filter": []}

    def check(r):
        ok(r.error_code, "list")
        got = {g.group_id: g for g in r.groups}
        assert GROUP in got and CGROUP in got, sorted(got)
        assert got[GROUP].protocol_type == "consumer"
        if hasattr(got[GROUP], "group_state"):
            assert got[GROUP].group_state == "Stable"
        if hasattr(got[GROUP], "group_type"):
            assert (got[GROUP].group_type, got[CGROUP].group_type) == ("classic", "consumer")
    return spec, check


@factory(18, "ApiVersions")
def api_versions_factory(w, v):
    spec = {"client_software_name": "tern-matrix", "client_software_version": "1.0"}

    def check(r):
        ok(r.error_code, "api versions")
        got = {int(a.api_key): (int(a.min_version), int(a.max_version)) for a in r.api_keys}
        assert got == w.table
    return spec, check


@factory(19, "CreateTopics")
def create_topics_factory(w, v):
    name = w.name(f"create-v{v}")
    spec = {"topics": [{"name": name, "num_partitions": 2, "replication_factor": 1,
                        "assignments": [], "configs": [{"name": "retention.ms",
                                                        "value": "123456"}]}],
            "timeout": 30_000, "validate_only": False}

    def check(r):
        (t,) = r.topics
        ok(t.error_code, "topic")
        assert t.name == name
        assert getattr(t, "error_message", None) is None
        if hasattr(t, "num_partitions"):
            assert (t.num_partitions, t.replication_factor) == (2, 1)
        if hasattr(t, "configs"):
            # v5+ (KIP-525): every config of the new topic with its source.
            cs = {c.name: (c.value, c.config_source) for c in t.configs}
            assert cs.get("retention.ms") == ("123456", 1), cs  # DYNAMIC_TOPIC_CONFIG
            assert cs.get("cleanup.policy") == ("delete", 5), cs  # DEFAULT_CONFIG
        m = w.metadata([name]).topics[0]
        ok(m.error_code, "metadata of the new topic")
        assert len(m.partitions) == 2
        if getattr(t, "topic_id", None) is not None:
            assert t.topic_id == m.topic_id and t.topic_id.int != 0
        assert w.topic_config(name, "retention.ms") == "123456"
    return spec, check


@factory(20, "DeleteTopics")
def delete_topics_factory(w, v):
    name = w.name(f"delete-v{v}")
    w.create_topic(name, 2)
    spec = {"topic_names": [name], "topics": [{"name": name}], "timeout": 30_000}

    def check(r):
        (t,) = r.responses
        ok(t.error_code, "topic")
        assert t.name == name
        assert w.metadata([name]).topics[0].error_code == E_UNKNOWN_TOPIC_OR_PARTITION
    cases = [(spec, check)]
    if v >= 6:
        by_id = w.name(f"delete-id-v{v}")
        w.create_topic(by_id, 1)
        tid = w.metadata([by_id]).topics[0].topic_id

        def check_id(r):
            (t,) = r.responses
            ok(t.error_code, "topic by id")
            assert t.topic_id == tid
            assert w.metadata([by_id]).topics[0].error_code == E_UNKNOWN_TOPIC_OR_PARTITION
        cases.append(({"topics": [{"name": None, "topic_id": tid}], "timeout": 30_000},
                      check_id))
    return cases


@factory(21, "DeleteRecords")
def delete_records_factory(w, v):
    name = w.name(f"delrec-v{v}")
    w.create_topic(name, 1)
    w.produce(name, 0, 10)
    spec = {"topics": [{"name": name, "partitions": [{"partition_index": 0, "offset": 4}]}],
            "timeout": 30_000}

    def check(r):
        (t,) = r.topics
        (p,) = t.partitions
        ok(p.error_code, "partition")
        assert (t.name, p.partition_index, p.low_watermark) == (name, 0, 4)
        assert w.list_offset(name, 0, -2) == 4
    return spec, check


@factory(22, "InitProducerId")
def init_producer_id_factory(w, v):
    spec = {"transactional_id": None, "transaction_timeout": 60_000,
            "producer_id": -1, "producer_epoch": -1}

    def check(r):
        ok(r.error_code, "init producer id")
        assert r.producer_id >= 0 and r.producer_epoch == 0
    return spec, check


@factory(32, "DescribeConfigs")
def describe_configs_factory(w, v):
    spec = {"resources": [
        {"resource_type": 2, "resource_name": TOPIC, "configuration_keys": None},
        {"resource_type": 4, "resource_name": str(w.node_id), "configuration_keys": None}],
        "include_synonyms": True, "include_documentation": True}

    def check(r):
        topic, broker = r.results
        ok(topic.error_code, "topic resource")
        ok(broker.error_code, "broker resource")
        assert (topic.resource_type, topic.resource_name) == (2, TOPIC)
        tc = {c.name: c for c in topic.configs}
        assert tc["retention.ms"].value == "604800000"
        assert tc["cleanup.policy"].value == "delete"
        bc = {c.name: c for c in broker.configs}
        assert bc, "the broker resource lists no configs"
    return spec, check


@factory(33, "AlterConfigs")
def alter_configs_factory(w, v):
    name = w.name(f"alter-v{v}")
    w.create_topic(name, 1)
    spec = {"resources": [{"resource_type": 2, "resource_name": name, "configs": [
        {"name": "retention.ms", "value": "7777"}]}], "validate_only": False}

    def check(r):
        (res,) = r.responses
        ok(res.error_code, "resource")
        assert (res.resource_type, res.resource_name) == (2, name)
        assert res.error_message is None
        assert w.topic_config(name, "retention.ms") == "7777"
    return spec, check


@factory(35, "DescribeLogDirs")
def describe_log_dirs_factory(w, v):
    spec = {"topics": [{"topic": TOPIC, "partitions": list(range(PARTITIONS))}]}

    def check(r):
        ok(getattr(r, "error_code", 0), "top level")
        (d,) = r.results
        ok(d.error_code, "log dir")
        assert d.log_dir
        (t,) = [t for t in d.topics if t.name == TOPIC]
        assert t.name == TOPIC
        assert sorted(p.partition_index for p in t.partitions) == list(range(PARTITIONS))
        assert all(p.partition_size > 0 for p in t.partitions)
        if hasattr(d, "total_bytes"):
            assert d.total_bytes > 0
    return [(spec, check), ({"topics": None}, check)]


@factory(37, "CreatePartitions")
def create_partitions_factory(w, v):
    name = w.name(f"parts-v{v}")
    w.create_topic(name, 1)
    spec = {"topics": [{"name": name, "count": 3, "assignments": None}],
            "timeout": 30_000, "validate_only": False}

    def check(r):
        (res,) = r.results
        ok(res.error_code, "topic")
        assert res.name == name
        assert len(w.metadata([name]).topics[0].partitions) == 3
    return spec, check


@factory(42, "DeleteGroups")
def delete_groups_factory(w, v):
    group = w.name(f"delgroup-v{v}")
    w.commit_simple(group, {0: 5})
    spec = {"groups_names": [group]}

    def check(r):
        (res,) = r.results
        ok(res.error_code, "group")
        assert res.group_id == group
        assert w.fetch_offsets(group, partitions=[0])[0][0] == -1
    return spec, check


@factory(44, "IncrementalAlterConfigs")
def incremental_alter_configs_factory(w, v):
    name = w.name(f"incalter-v{v}")
    w.create_topic(name, 1)
    spec = {"resources": [{"resource_type": 2, "resource_name": name, "configs": [
        {"name": "retention.ms", "config_operation": 0, "value": "8888"}]}],
        "validate_only": False}

    def check(r):
        (res,) = r.responses
        ok(res.error_code, "resource")
        assert (res.resource_type, res.resource_name) == (2, name)
        assert res.error_message is None
        assert w.topic_config(name, "retention.ms") == "8888"
    return spec, check


@factory(47, "OffsetDelete")
def offset_delete_factory(w, v):
    group = w.name(f"offdel-v{v}")
    w.commit_simple(group, {0: 5, 1: 6})
    spec = {"group_id": group, "topics": [{"name": TOPIC, "partitions": [
        {"partition_index": 0}]}]}

    def check(r):
        ok(r.error_code, "group")
        (t,) = r.topics
        assert [(p.partition_index, p.error_code) for p in t.partitions] == [(0, E_NONE)]
        got = w.fetch_offsets(group, partitions=[0, 1])
        assert (got[0][0], got[1][0]) == (-1, 6), got
    return spec, check


@factory(60, "DescribeCluster")
def describe_cluster_factory(w, v):
    spec = {"include_cluster_authorized_operations": False, "endpoint_type": 1,
            "include_fenced_brokers": False}

    def check(r):
        ok(r.error_code, "cluster")
        assert r.cluster_id and r.controller_id == w.node_id
        assert [(b.broker_id, b.host, b.port) for b in r.brokers] == [
            (w.node_id, "127.0.0.1", w.port)]
    return spec, check


@factory(55, "DescribeQuorum")
def describe_quorum_factory(w, v):
    spec = {"topics": [{"topic_name": "__cluster_metadata",
                        "partitions": [{"partition_index": 0}]}]}

    def check(r):
        ok(r.error_code, "quorum")
        (t,) = r.topics
        (p,) = t.partitions
        ok(p.error_code, "partition")
        assert (t.topic_name, p.partition_index, p.leader_id) == (
            "__cluster_metadata", 0, w.node_id)
        # A standalone node is a one-voter quorum: the leader, caught up with itself.
        (voter,) = p.current_voters
        assert voter.replica_id == w.node_id and voter.log_end_offset == p.high_watermark > 0
        assert list(p.observers) == []
    return spec, check


@factory(43, "ElectLeaders")
def elect_leaders_factory(w, v):
    # Standalone RF1: the only replica leads already (ELECTION_NOT_NEEDED 84); a partition
    # that does not exist is UNKNOWN_TOPIC_OR_PARTITION.
    spec = {"election_type": 0, "timeout_ms": 30000,
            "topic_partitions": [{"topic": TOPIC, "partitions": [0, 999]}]}

    def check(r):
        if v >= 1:
            ok(r.error_code, "whole request")
        (t,) = r.replica_election_results
        assert t.topic == TOPIC
        got = {p.partition_id: int(p.error_code) for p in t.partition_result}
        assert got == {0: 84, 999: E_UNKNOWN_TOPIC_OR_PARTITION}, got
    return spec, check


@factory(45, "AlterPartitionReassignments")
def alter_partition_reassignments_factory(w, v):
    # Standalone: moving a partition to the replica it has is accepted and changes nothing; a
    # cancel with no move in progress is NO_REASSIGNMENT_IN_PROGRESS (85), an unregistered
    # broker INVALID_REPLICA_ASSIGNMENT (39), a partition that does not exist
    # UNKNOWN_TOPIC_OR_PARTITION. v1 echoes allow_replication_factor_change.
    spec = {"timeout_ms": 30000, "allow_replication_factor_change": True,
            "topics": [{"name": TOPIC, "partitions": [
                {"partition_index": 0, "replicas": [w.node_id]},
                {"partition_index": 1, "replicas": None},
                {"partition_index": 2, "replicas": [w.node_id, 9999]},
                {"partition_index": 999, "replicas": [w.node_id]}]}]}

    def check(r):
        ok(r.error_code, "whole request")
        if v >= 1:
            assert r.allow_replication_factor_change is True
        (t,) = r.responses
        assert t.name == TOPIC
        got = {p.partition_index: int(p.error_code) for p in t.partitions}
        assert got == {0: E_NONE, 1: 85, 2: 39, 999: E_UNKNOWN_TOPIC_OR_PARTITION}, got
        assert all((p.error_message is None) == (p.error_code == 0) for p in t.partitions)
    return spec, check


@factory(46, "ListPartitionReassignments")
def list_partition_reassignments_factory(w, v):
    spec = {"timeout_ms": 30000, "topics": None}

    def check(r):
        ok(r.error_code, "whole request")
        assert list(r.topics) == [], "nothing is moving"
    return spec, check


@factory(68, "ConsumerGroupHeartbeat")
def consumer_group_heartbeat_factory(w, v):
    spec = {"group_id": CGROUP, "member_id": w.cmember_id, "member_epoch": w.cepoch,
            "instance_id": None, "rack_id": None, "rebalance_timeout": -1,
            "subscribed_topic_names": None, "subscribed_topic_regex": None,
            "server_assignor": None, "topic_partitions": None}

    def check(r):
        ok(r.error_code, "heartbeat")
        assert r.member_id == w.cmember_id
        assert r.member_epoch >= w.cepoch
        assert r.heartbeat_interval.total_seconds() > 0
        w.cepoch = r.member_epoch
    return spec, check


@factory(69, "ConsumerGroupDescribe")
def consumer_group_describe_factory(w, v):
    spec = {"group_ids": [CGROUP], "include_authorized_operations": False}

    def check(r):
        (g,) = r.groups
        ok(g.error_code, "group")
        assert g.group_id == CGROUP and g.group_state == "Stable"
        (m,) = g.members
        assert m.member_id == w.cmember_id and list(m.subscribed_topic_names) == [TOPIC]
        assert (m.client_id, m.client_host) == (kmatrix.CLIENT_ID, CLIENT_HOST)
        parts = [(tp.topic_id, tp.topic_name, sorted(tp.partitions))
                 for tp in m.assignment.topic_partitions]
        assert parts == [(w.topic_id, TOPIC, list(range(PARTITIONS)))], parts
    return spec, check


@factory(75, "DescribeTopicPartitions")
def describe_topic_partitions_factory(w, v):
    spec = {"topics": [{"name": TOPIC}], "response_partition_limit": 2000, "cursor": None}

    def check(r):
        (t,) = r.topics
        ok(t.error_code, "topic")
        assert (t.name, t.topic_id) == (TOPIC, w.topic_id)
        assert sorted(p.partition_index for p in t.partitions) == list(range(PARTITIONS))
        assert all(p.leader_id == w.node_id for p in t.partitions)
    return spec, check


# -------------------------------------------------------------------- tests
def test_version_matrix(world, api_version_pair):
    api_key, version = api_version_pair
    make = FACTORIES.get(api_key)
    assert make is not None, (
        f"api {api_key} v{version} is advertised but the matrix has no request factory for it")
    world.keep_alive()
    cases = make(world, version)
    # A factory returns one (request, check) case or a list of them.
    for spec, check in cases if isinstance(cases, list) else [cases]:
        # A connection of its own: a pair that leaves the socket silent cannot break others.
        with KioConn(world.port) as conn:
            resp = conn.call(request(api_key, version, spec))
        check(resp)


def test_matrix_covers_every_advertised_pair(world):
    pairs = sum(hi - lo + 1 for lo, hi in world.table.values())
    missing = sorted(set(world.table) - set(FACTORIES))
    print(f"version matrix: {len(world.table)} APIs, {pairs} (API, version) pairs")
    assert not missing, f"advertised APIs without a factory: {missing}"
