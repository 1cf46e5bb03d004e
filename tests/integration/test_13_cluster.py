"""Issue 10 with real processes: 3 and 5 `tern` processes as one cluster (combined, and 3
controllers + 2/3 brokers), real clients (confluent-kafka, kafka-python, kafkajs) reaching the
leader of every partition across 3 brokers, kill -9 of the active controller, a restart of the
whole quorum from its data dirs, a SIGSTOPped broker fenced past its session timeout and back
after SIGCONT, the bad starts that exit with code 2, and a standalone data dir upgraded in place.

Every process is started through cluster.py (and harness.py) and killed at teardown. Every wait
is bounded (READY / ELECTION / FENCE bounds are ceilings, not measured thresholds).
"""

import json
import pathlib
import re
import subprocess
import time

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic

import kclients as kc
from cluster import Cluster, describe_cluster, leaders, metadata

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "tests" / "clients" / "js"
ELECTION_BOUND = 30.0
FENCE_BOUND = 60.0
OP = 30.0
RECORDS_PER_PARTITION = 5

# Small session timeout for the fencing test (heartbeat well below it).
FAST_SESSION = {"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 500}

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def make_cluster(request, tmp_path, tern_bin):
    """make(n, mode="combined", extra=None, start=True, sub=None, **Cluster kwargs) -> Cluster;
    every process of every cluster is killed at teardown."""
    clusters = []

    def make(n, mode="combined", extra=None, start=True, sub=None, **kwargs):
        workdir = tmp_path / (sub or f"cluster{len(clusters)}")
        workdir.mkdir(parents=True, exist_ok=True)
        track = request.node.__dict__.setdefault("_tern_brokers", [])
        c = Cluster(tern_bin, workdir, n, mode, extra=extra, track=track, **kwargs)
        clusters.append(c)
        if start:
            c.start()
        return c

    yield make
    for c in clusters:
        c.cleanup()


# ------------------------------------------------------------------ helpers
def create_topics(bootstrap, topics, rf, configs=None):
    """CreateTopics through confluent-kafka: {name: partitions}; waits until all are led."""
    a = kc.admin(bootstrap)
    fs = a.create_topics([NewTopic(t, num_partitions=p, replication_factor=rf,
                                   config=configs or {}) for t, p in topics.items()],
                         request_timeout=OP)
    for t, f in fs.items():
        f.result(timeout=OP)
    for t, p in topics.items():
        kc.wait_for_topic(bootstrap, t, p)


def wait_led(c, topic, partitions, timeout=OP, via=None):
    """Metadata of `topic` from a broker once every partition has a leader: {p: leader}."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        for b in ([via] if via else c.running_brokers()):
            try:
                last = leaders(metadata(b.broker_port, [topic]), topic)
            except Exception as e:  # noqa: BLE001 - retried until the bound
                last = repr(e)
                continue
            if isinstance(last, dict) and len(last) == partitions and \
                    all(v >= 0 for v in last.values()):
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic}: not every partition led within {timeout}s: {last}")
        time.sleep(0.2)


def assert_spread(c, topic, partitions, broker_ids):
    """Leaders of `topic` on every one of `broker_ids`, and every broker agrees."""
    views = {}
    for b in c.running_brokers():
        views[b.node_id] = wait_led(c, topic, partitions, via=b)
    first = next(iter(views.values()))
    assert all(v == first for v in views.values()), f"brokers disagree on leaders: {views}"
    assert set(first.values()) == set(broker_ids), \
        f"{topic}: leaders {first} are not spread over brokers {sorted(broker_ids)}"
    return first


def records_for(topic, partitions):
    return {p: [(f"k{p}-{i}".encode(), f"{topic} p{p} #{i}".encode())
                for i in range(RECORDS_PER_PARTITION)] for p in range(partitions)}


def confluent_round_trip(bootstrap, topic, partitions):
    want = records_for(topic, partitions)
    p = kc.producer(bootstrap, acks="all")
    d = kc.Deliveries()
    for part, recs in want.items():
        for k, v in recs:
            kc.produce(p, topic, v, d, key=k, partition=part)
    kc.flush(p)
    d.assert_no_errors()
    got = kc.consume_range(bootstrap, topic, {q: (0, RECORDS_PER_PARTITION) for q in want})
    assert {q: [(r.key, r.value) for r in recs] for q, recs in got.items()} == want


def topic_summary(md):
    """name -> (topic id, [replicas of each partition]) of a Metadata response (user topics)."""
    out = {}
    for t in md.topics:
        if t.name.startswith("__"):
            continue
        parts = sorted(t.partitions, key=lambda p: int(p.partition_index))
        out[t.name] = (str(t.topic_id), [sorted(int(r) for r in p.replica_nodes) for p in parts])
    return out


def wait_exit_2(node, timeout=90.0):
    rc = node.wait_exit(timeout=timeout)
    text = node.proc.stderr_text()
    assert rc == 2, f"{node.name}: exit code {rc}, expected 2; stderr tail:\n{node.stderr_tail()}"
    return text


# -------------------------------------------------------------------- tests
@pytest.mark.parametrize("n", [3, 5])
def test_combined_cluster_forms_and_spreads_leaders(make_cluster, n):
    c = make_cluster(n)
    ids = list(range(1, n + 1))
    q = c.describe_quorum()
    assert q.error_code == 0, q
    assert sorted(v for v, _ in q.voters) == ids, q
    assert q.leader_id in ids, q
    # Every voter has been heard from by the leader: last_fetch_timestamp is a Unix-ms time.
    deadline = time.monotonic() + 30
    while min(q.last_fetch.values(), default=-1) < 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        q = c.describe_quorum()
    now_ms = time.time() * 1000
    assert q.last_fetch and all(0 < t <= now_ms + 1000 for t in q.last_fetch.values()), q.last_fetch
    for b in c.broker_nodes():
        dc = describe_cluster(b.broker_port)
        assert int(dc.error_code) == 0
        assert int(dc.controller_id) == q.leader_id, f"{b.name} names another controller: {dc}"
        assert sorted(int(x.broker_id) for x in dc.brokers) == ids
    topic = f"spread-{n}"
    create_topics(c.bootstrap, {topic: 2 * n}, rf=3)
    assert_spread(c, topic, 2 * n, ids)
    confluent_round_trip(c.bootstrap, topic, 2 * n)


@pytest.mark.parametrize("brokers", [2, 3])
def test_separate_controllers_and_brokers(make_cluster, brokers):
    c = make_cluster(brokers, mode="separate")
    broker_ids = [4 + i for i in range(brokers)]
    md = metadata(c.broker_nodes()[0].broker_port)
    assert sorted(int(b.node_id) for b in md.brokers) == broker_ids, \
        "Metadata lists the brokers only, not the controller-only nodes"
    q = c.describe_quorum()
    assert sorted(v for v, _ in q.voters) == [1, 2, 3], q
    assert q.leader_id in (1, 2, 3), q
    topic = f"separate-{brokers}"
    create_topics(c.bootstrap, {topic: 2 * brokers}, rf=brokers)
    assert_spread(c, topic, 2 * brokers, broker_ids)
    confluent_round_trip(c.bootstrap, topic, 2 * brokers)


def test_clients_reach_the_leader_on_every_broker(make_cluster):
    c = make_cluster(3)
    ids = [1, 2, 3]
    partitions = 6

    # confluent-kafka
    create_topics(c.bootstrap, {"clients-confluent": partitions}, rf=3)
    assert_spread(c, "clients-confluent", partitions, ids)
    confluent_round_trip(c.bootstrap, "clients-confluent", partitions)

    # kafka-python: its own admin client, producer (to explicit partitions) and consumer.
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KpNewTopic
    topic = "clients-kafka-python"
    a = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30_000)
    try:
        a.create_topics([KpNewTopic(topic, partitions, 3)], timeout_ms=30_000)
    finally:
        a.close()
    wait_led(c, topic, partitions)
    assert_spread(c, topic, partitions, ids)
    want = records_for(topic, partitions)
    p = kc.kp_producer(c.bootstrap, acks="all")
    try:
        futures = [p.send(topic, key=k, value=v, partition=part)
                   for part, recs in want.items() for k, v in recs]
        p.flush(timeout=OP)
        for f in futures:
            f.get(timeout=OP)
    finally:
        p.close(timeout=10)
    got = kc.kp_consume_range(c.bootstrap, topic, {q: (0, RECORDS_PER_PARTITION) for q in want})
    assert {q: [(r.key, r.value) for r in recs] for q, recs in got.items()} == want

    # kafkajs (Node.js): creates, reads leaders, produces and consumes as a group member.
    topic = "clients-kafkajs"
    recs = [{"partition": part, "key": k.decode(), "value": v.decode()}
            for part, rs in records_for(topic, partitions).items() for k, v in rs]
    plan = {"brokers": [b.bootstrap for b in c.broker_nodes()], "topic": topic,
            "group": "clients-kafkajs-group", "partitions": partitions,
            "replication_factor": 3, "records": recs, "wait_ms": 60_000}
    res = subprocess.run(["node", str(JS_DIR / "cluster.js"), json.dumps(plan)],
                         capture_output=True, text=True, timeout=150, cwd=str(JS_DIR))
    assert res.returncode == 0, f"kafkajs exited with {res.returncode}: {res.stderr[-4000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    js_leaders = {int(k): v for k, v in out["leaders"].items()}
    assert set(js_leaders.values()) == set(ids), f"kafkajs saw leaders {js_leaders}"
    assert js_leaders == assert_spread(c, topic, partitions, ids)
    assert all(r["error"] == 0 for r in out["produced"]), out["produced"]
    got = sorted((r["partition"], r["offset"], r["key"], r["value"]) for r in out["consumed"])
    want_js = sorted((r["partition"], i % RECORDS_PER_PARTITION, r["key"], r["value"])
                     for i, r in enumerate(recs))
    assert got == want_js


def test_kill9_of_the_active_controller(make_cluster):
    c = make_cluster(3)
    create_topics(c.bootstrap, {"before-failover": 3}, rf=3)
    before = topic_summary(metadata(c.node(1).broker_port))
    old = c.active_controller(timeout=ELECTION_BOUND)
    assert old is not None
    c.node(old).kill9()
    survivors = [n for n in c.broker_nodes() if n.node_id != old]
    new = c.active_controller(timeout=ELECTION_BOUND, exclude={old}, via=survivors[0])
    assert new is not None and new != old, f"no new active controller within {ELECTION_BOUND}s"
    # Every survivor agrees on it, and CreateTopics works again.
    for s in survivors:
        assert c.active_controller(timeout=ELECTION_BOUND, exclude={old}, via=s) == new
    bootstrap = ",".join(s.bootstrap for s in survivors)
    create_topics(bootstrap, {"after-failover": 2}, rf=2)
    after = topic_summary(metadata(survivors[0].broker_port))
    assert after["before-failover"] == before["before-failover"], "a committed topic changed"
    # The killed node comes back and sees everything.
    c.node(old).start()
    c.wait_ready()
    wait_led(c, "after-failover", 2, via=c.node(old))
    back = topic_summary(metadata(c.node(old).broker_port))
    assert back["before-failover"] == before["before-failover"]
    assert back["after-failover"] == after["after-failover"]


def test_whole_quorum_killed_and_restarted_keeps_metadata(make_cluster):
    c = make_cluster(3)
    create_topics(c.bootstrap, {"durable-a": 3, "durable-b": 5}, rf=3,
                  configs={"retention.ms": "3600000"})
    md = metadata(c.node(1).broker_port)
    before = topic_summary(md)
    cluster_id = md.cluster_id
    assert set(before) >= {"durable-a", "durable-b"}
    for n in c.nodes.values():
        n.kill9()
    c.start()
    for b in c.broker_nodes():
        wait_led(c, "durable-b", 5, via=b)
        md = metadata(b.broker_port)
        assert md.cluster_id == cluster_id
        assert topic_summary(md) == before, f"{b.name} came back with other metadata"
    # Topic configs came back too.
    res = ConfigResource(ConfigResource.Type.TOPIC, "durable-a")
    admin = kc.admin(c.bootstrap)  # kept alive until the result is in
    got = admin.describe_configs([res], request_timeout=OP)[res].result(timeout=OP)
    assert got["retention.ms"].value == "3600000"
    # The restarted quorum takes new changes.
    create_topics(c.bootstrap, {"durable-c": 1}, rf=3)


def test_sigstopped_broker_is_fenced_and_rejoins(make_cluster):
    c = make_cluster(3, extra=FAST_SESSION)
    create_topics(c.bootstrap, {"fence-me": 6}, rf=3)
    assert_spread(c, "fence-me", 6, [1, 2, 3])
    active = c.active_controller(timeout=ELECTION_BOUND)
    victim = next(n for n in c.broker_nodes() if n.node_id != active)
    victim.sigstop()
    others = [n for n in c.broker_nodes() if n is not victim]
    deadline = time.monotonic() + FENCE_BOUND
    while True:
        md = metadata(others[0].broker_port)
        listed = {int(b.node_id) for b in md.brokers}
        led = set(leaders(md, "fence-me").values())
        if victim.node_id not in listed and victim.node_id not in led:
            break
        assert time.monotonic() < deadline, \
            f"broker {victim.node_id} still listed ({listed}) or leading ({led}) " \
            f"{FENCE_BOUND}s after SIGSTOP"
        time.sleep(0.2)
    for o in others:
        assert victim.node_id not in {int(b.node_id) for b in metadata(o.broker_port).brokers}
    victim.sigcont()
    c.wait_ready(timeout=FENCE_BOUND)


def test_data_dir_of_another_cluster_exits_2(make_cluster):
    # Node 3's data dir formatted by another cluster (a one-voter cluster of node 3).
    other = make_cluster(1, sub="other", first_node_id=3)
    other_id = metadata(other.node(3).broker_port).cluster_id
    assert other_id
    other.node(3).kill9()

    c = make_cluster(3, sub="main")
    create_topics(c.bootstrap, {"kept": 3}, rf=3)
    this_id = metadata(c.node(1).broker_port).cluster_id
    assert this_id and this_id != other_id
    before = topic_summary(metadata(c.node(1).broker_port))
    n3 = c.node(3)
    n3.kill9()
    n3.extra["log.dirs"] = str(other.node(3).log_dir)
    n3.start(wait=False)
    text = wait_exit_2(n3)
    assert "cluster" in text.lower() and other_id in text and this_id in text, \
        f"the refusal does not name the cluster mismatch:\n{n3.stderr_tail()}"
    assert "panicked" not in text, f"node 3 panicked instead of refusing:\n{n3.stderr_tail()}"
    for n in (c.node(1), c.node(2)):
        assert n.running(), f"{n.name} stopped while node 3 was refused"
        assert "panicked" not in n.proc.stderr_text(), f"{n.name} panicked:\n{n.stderr_tail()}"
    # The cluster is unharmed, and node 3 rejoins from its own data dir.
    del n3.extra["log.dirs"]
    n3.start()
    c.wait_ready()
    for b in c.broker_nodes():
        wait_led(c, "kept", 3, via=b)
        md = metadata(b.broker_port)
        assert md.cluster_id == this_id
        assert topic_summary(md) == before


def test_duplicate_node_id_exits_2(make_cluster):
    c = make_cluster(1, mode="separate")
    dup = c.extra_node(4, "duplicate")
    started = time.monotonic()
    dup.start(wait=False)
    text = wait_exit_2(dup)
    print(f"duplicate node.id refused after {time.monotonic() - started:.2f}s")
    assert re.search(r"node\.id\D{0,40}4", text) and \
        re.search(r"duplicate|another broker|already", text, re.I), \
        f"the refusal does not name the duplicate node.id:\n{dup.stderr_tail()}"
    # Refused because the live process was seen heartbeating after the duplicate asked (not
    # after waiting out a session timeout).
    assert "is alive" in text, f"the refusal was not the proven-duplicate one:\n{dup.stderr_tail()}"
    # The cluster is unharmed: broker 4 is still the one listed, and serves.
    c.wait_ready()
    create_topics(c.bootstrap, {"after-duplicate": 1}, rf=1)
    confluent_round_trip(c.bootstrap, "after-duplicate", 1)
    # A quick restart of broker 4 (its old session still registered) is not a duplicate: it
    # registers once that session expires, and serves again.
    b4 = c.node(4)
    b4.kill9()
    started = time.monotonic()
    b4.start()
    c.wait_ready()
    print(f"broker 4 restarted with its old session alive: serving after "
          f"{time.monotonic() - started:.2f}s")
    assert "configuration error" not in b4.proc.stderr_text()
    confluent_round_trip(c.bootstrap, "after-duplicate", 1)


def test_standalone_data_dir_upgrades_in_place(make_cluster, broker_factory, tmp_path):
    """Plain `tern serve` (node.id 0 by default) writes a data dir; the same dir restarted as
    node 0 of a combined one-voter cluster keeps its cluster id, topics and records. (Another
    node.id is refused, as Kafka refuses a meta.properties of another node.)"""
    workdir = tmp_path / "upgrade"
    b = broker_factory(log_dir=workdir / "node0-data", shards=1)
    kc.create_topic(b.bootstrap, "legacy", partitions=3)
    want = records_for("legacy", 3)
    p = kc.producer(b.bootstrap, acks="all")
    d = kc.Deliveries()
    for part, recs in want.items():
        for k, v in recs:
            kc.produce(p, "legacy", v, d, key=k, partition=part)
    kc.flush(p)
    d.assert_no_errors()
    md = metadata(b.port, ["legacy"])
    topic_id = str(md.topics[0].topic_id)
    cluster_id = md.cluster_id
    b.stop()

    c = make_cluster(1, sub="upgrade", first_node_id=0)
    assert c.node(0).log_dir == b.log_dir
    wait_led(c, "legacy", 3)
    md = metadata(c.node(0).broker_port, ["legacy"])
    assert md.cluster_id == cluster_id, "the cluster id is kept"
    (t,) = md.topics
    assert str(t.topic_id) == topic_id and len(t.partitions) == 3
    assert all(int(x.leader_id) == 0 for x in t.partitions)
    got = kc.consume_range(c.bootstrap, "legacy", {q: (0, RECORDS_PER_PARTITION) for q in want})
    assert {q: [(r.key, r.value) for r in recs] for q, recs in got.items()} == want
    # And it goes on: a restart of the upgraded node keeps it all (no second upgrade).
    c.node(0).restart()
    c.wait_ready()
    wait_led(c, "legacy", 3)
    assert str(metadata(c.node(0).broker_port, ["legacy"]).topics[0].topic_id) == topic_id



def test_explicit_replica_assignment_reaches_the_controller(make_cluster):
    """confluent-kafka's NewTopic(replica_assignment=...): the controller places the replicas as
    asked (first replica leads) and refuses unknown brokers, duplicates and uneven counts with
    INVALID_REPLICA_ASSIGNMENT."""
    from confluent_kafka import KafkaError
    c = make_cluster(3)
    a = kc.admin(c.bootstrap)
    want = [[2, 3, 1], [3, 1, 2], [1, 2, 3], [2, 1, 3]]
    fs = a.create_topics([NewTopic("manual", len(want), replica_assignment=want)], request_timeout=OP)
    fs["manual"].result(timeout=OP)
    wait_led(c, "manual", len(want))
    md = metadata(c.node(1).broker_port, ["manual"])
    (t,) = [t for t in md.topics if t.name == "manual"]
    got = {int(p.partition_index): [int(r) for r in p.replica_nodes] for p in t.partitions}
    assert got == dict(enumerate(want)), got
    assert leaders(md, "manual") == {i: r[0] for i, r in enumerate(want)}
    for name, bad in [("unknown-broker", [[1, 9]]), ("dup-broker", [[1, 1]]),
                      ("uneven", [[1, 2], [3]])]:
        f = a.create_topics([NewTopic(name, len(bad), replica_assignment=bad)], request_timeout=OP)[name]
        with pytest.raises(Exception) as e:
            f.result(timeout=OP)
        err = e.value.args[0]
        assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, (name, err)
    confluent_round_trip(c.bootstrap, "manual", len(want))
