"""Issue 11, leadership, with real processes (3 nodes, `--shards 1`):
- SIGTERM of a partition leader under an idempotent acks=all confluent-kafka producer: a
  controlled shutdown moves the leadership to another ISR member before the process stops
  (exit code 0); the producer sees no error and every acknowledged record is in the log once,
  in order. The produce latency around the move is printed (p50/p99/p99.9), not asserted.
- ElectLeaders: once the restarted broker is back in the ISR, confluent-kafka's AdminClient
  (PREFERRED) moves the leadership back to it; `tern cluster elect-leaders` then reports
  ELECTION_NOT_NEEDED and exits 0.
- SIGTERM of every node in turn: the last one, with no metadata quorum left to acknowledge
  its controlled shutdown, still exits cleanly (exit code 0, within the harness's stop bound).
- Unclean leader election (`unclean.leader.election.enable`, topic level): a factor-2 partition
  whose ISR shrank to its leader loses that leader while the other replica is out of sync;
  while the topic says false the partition stays leaderless, once an IncrementalAlterConfigs
  sets it true the controller makes the out-of-sync replica leader (logged, counted in
  `tern_unclean_leader_elections_total`), and it takes writes from where its own log ends.
- Auto leader rebalance (`auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds`
  1): after the preferred leader is killed and restarted, the controller moves the leadership
  back to it once it is in the ISR, without any ElectLeaders request.

Every process is started through cluster.py and killed at teardown; every wait is bounded
(the bounds are ceilings, not measured thresholds).
"""

import subprocess
import time

import pytest
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

import kclients as kc
from cluster import Cluster, metadata

OP = 60.0
EXTRA = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
         "replica.lag.time.max.ms": 3000}

pytestmark = pytest.mark.timeout(300)


def make_cluster(request, tmp_path, tern_bin, extra=None, metrics=False):
    track = request.node.__dict__.setdefault("_tern_brokers", [])
    return Cluster(tern_bin, tmp_path / "c", 3, "combined", extra={**EXTRA, **(extra or {})},
                   track=track, metrics=metrics)


@pytest.fixture
def cluster3(request, tmp_path, tern_bin):
    c = make_cluster(request, tmp_path, tern_bin)
    try:
        c.start()
        yield c
    finally:
        c.cleanup()


def state(c, topic, partition=0, exclude=()):
    """(leader, isr, replicas) of a partition as a running broker reports it."""
    last = None
    for b in c.running_brokers(exclude=exclude):
        try:
            md = metadata(b.broker_port, [topic])
        except Exception as e:  # noqa: BLE001 - another broker may answer
            last = repr(e)
            continue
        for t in md.topics:
            if t.name == topic:
                for p in t.partitions:
                    if int(p.partition_index) == partition:
                        return (int(p.leader_id), sorted(int(x) for x in p.isr_nodes),
                                [int(x) for x in p.replica_nodes])
    raise AssertionError(f"no broker answered Metadata for {topic}: {last}")


def wait_state(c, topic, pred, what, timeout=OP, exclude=()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = state(c, topic, exclude=exclude)
            if pred(*last):
                return last
        except AssertionError as e:
            last = str(e)
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout}s; last state {last}")


def create(c, topic, rf=3, min_isr=2, assignment=None):
    a = kc.admin(c.bootstrap)
    if assignment:
        nt = NewTopic(topic, num_partitions=-1, replication_factor=-1,
                      replica_assignment=assignment,
                      config={"min.insync.replicas": str(min_isr)})
    else:
        nt = NewTopic(topic, num_partitions=1, replication_factor=rf,
                      config={"min.insync.replicas": str(min_isr)})
    for f in a.create_topics([nt], request_timeout=OP).values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, topic, 1)
    n = len(assignment[0]) if assignment else rf
    return wait_state(c, topic, lambda l, isr, r: l >= 0 and len(isr) == n, "a full ISR")


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


class Load:
    """An idempotent acks=all producer at a steady pace, with per-record latency."""

    def __init__(self, c, topic):
        self.topic = topic
        self.p = kc.producer(c.bootstrap, acks="all", enable_idempotence=True,
                             message_timeout_ms=120_000, retry_backoff_ms=20,
                             linger_ms=1)
        self.acked = []  # (offset, value, latency s, produced at monotonic s)
        self.errors = []
        self.sent_at = {}
        self.n = 0

    def _cb(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
            return
        v = msg.value()
        self.acked.append((msg.offset(), v, msg.latency(), self.sent_at.pop(v)))

    def run(self, seconds, per_tick=10, tick=0.005, until=None):
        """Produces `per_tick` records every `tick` s for `seconds` (or until `until()`)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            for _ in range(per_tick):
                v = f"record-{self.n}".encode()
                self.n += 1
                self.sent_at[v] = time.monotonic()
                for _ in range(1000):
                    try:
                        self.p.produce(self.topic, value=v, partition=0, on_delivery=self._cb)
                        break
                    except BufferError:
                        self.p.poll(0.01)
            self.p.poll(tick)

    def flush(self):
        left = self.p.flush(OP * 2)
        assert left == 0, f"{left} records not delivered"
        assert not self.errors, f"delivery errors: {self.errors[:5]}"


def assert_ledger(c, load):
    end = max(o for o, *_ in load.acked) + 1
    got = kc.consume_range(c.bootstrap, load.topic, {0: (0, end)}, timeout=OP)
    records = [(r.offset, r.value) for r in got[0]]
    values = [v for _, v in records]
    assert len(values) == len(set(values)), "a record is in the log twice"
    at = dict(records)
    for off, v, *_ in load.acked:
        assert at.get(off) == v, f"acknowledged {v!r} at {off}, log has {at.get(off)!r}"
    order = [int(v.split(b"-")[1]) for v in values]
    assert order == sorted(order), "records out of order"
    assert len(load.acked) == load.n, f"{load.n - len(load.acked)} records never acknowledged"


def test_sigterm_leader_moves_leadership_without_client_errors(cluster3, tern_bin):
    c = cluster3
    topic = "moved"
    leader, isr, replicas = create(c, topic)
    preferred = replicas[0]
    assert leader == preferred
    load = Load(c, topic)
    load.run(2.0)
    node = c.node(leader)
    t_term = time.monotonic()
    node.proc.proc.send_signal(15)
    # Keep producing while the leadership moves and the old leader stops.
    load.run(OP, until=lambda: not node.running())
    t_exit = time.monotonic()
    rc = node.wait_exit(timeout=OP)
    load.run(2.0)
    load.flush()
    assert rc == 0, f"exit code {rc} after SIGTERM\n{node.stderr_tail(30)}"
    new_leader, isr, _ = wait_state(c, topic, lambda l, i, r: l >= 0 and l != leader,
                                    "a new leader", exclude=(leader,))
    assert leader not in isr
    assert "controlled shutdown: fenced and leading nothing" in node.proc.stderr_text(), (
        node.stderr_tail(40))
    # Its replica fetchers (it follows the new leader for a moment) ended before the logs
    # closed: none appended to a closed log.
    assert "log is closed" not in node.proc.stderr_text(), node.stderr_tail(40)
    window = [lat for _, _, lat, at in load.acked if t_term - 0.5 <= at <= t_exit + 0.5]
    steady = [lat for _, _, lat, at in load.acked if at < t_term - 0.5]
    print(f"\nSIGTERM of leader {leader} -> {new_leader}: exit after "
          f"{(t_exit - t_term) * 1000:.0f} ms; {len(load.acked)} records acknowledged")
    for name, lat in (("steady", steady), ("during the move", window)):
        print(f"  produce latency {name}: n={len(lat)} p50={percentile(lat, .5) * 1000:.1f} ms "
              f"p99={percentile(lat, .99) * 1000:.1f} ms "
              f"p99.9={percentile(lat, .999) * 1000:.1f} ms "
              f"max={max(lat, default=float('nan')) * 1000:.1f} ms")
    assert_ledger(c, load)

    # The old leader comes back, catches up, and ElectLeaders moves the leadership back.
    node.restart()
    wait_state(c, topic, lambda l, i, r: preferred in i, "the preferred replica in the ISR")
    a = kc.admin(c.bootstrap)
    res = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=OP)
    assert list(res.values()) == [None], res
    wait_state(c, topic, lambda l, i, r: l == preferred, "the preferred leader")
    # Nothing left to do: the CLI reports ELECTION_NOT_NEEDED and succeeds.
    out = subprocess.run([str(tern_bin), "cluster", "elect-leaders", "--topic", topic,
                          "-b", c.bootstrap], capture_output=True, text=True, timeout=OP)
    assert out.returncode == 0, out.stderr
    assert f"{topic}-0: ElectionNotNeeded" in out.stdout, out.stdout


UNCLEAN_METRIC = "tern_unclean_leader_elections_total"


def unclean_elections(c):
    """Unclean elections counted by the controllers of the running nodes (each counts the ones
    it decided while active)."""
    return sum(n.metric(UNCLEAN_METRIC) or 0 for n in c.running_brokers())


def set_topic_config(c, topic, key, value):
    a = kc.admin(c.bootstrap)
    r = ConfigResource(ConfigResource.Type.TOPIC, topic,
                       incremental_configs=[ConfigEntry(key, value,
                                                        incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([r])[r].result(timeout=OP)


def test_unclean_leader_election_follows_the_topic_config(request, tmp_path, tern_bin):
    c = make_cluster(request, tmp_path, tern_bin, metrics=True)
    try:
        c.start()
        topic = "unclean"
        # Replicas on brokers 2 and 3 (2 preferred); broker 1 keeps a controller majority
        # with whichever of them runs.
        a = kc.admin(c.bootstrap)
        nt = NewTopic(topic, 1, replica_assignment=[[2, 3]],
                      config={"min.insync.replicas": "1",
                              "unclean.leader.election.enable": "false"})
        a.create_topics([nt], request_timeout=OP)[topic].result(timeout=OP)
        kc.wait_for_topic(c.bootstrap, topic, 1)
        wait_state(c, topic, lambda l, isr, r: l == 2 and isr == [2, 3], "leader 2, ISR [2, 3]")

        # Broker 3 dies; the ISR shrinks to the leader, which takes records 3 never gets.
        c.node(3).kill9()
        wait_state(c, topic, lambda l, isr, r: l == 2 and isr == [2], "ISR [2]", exclude=(3,))
        p = kc.producer(c.bootstrap, acks="all")
        d = kc.Deliveries()
        for i in range(20):
            kc.produce(p, topic, f"lost-{i}".encode(), d, partition=0)
        kc.flush(p)
        d.assert_no_errors()

        # The only ISR member dies; the out-of-sync replica comes back.
        c.node(2).kill9()
        c.node(3).start()
        c.wait_ready(brokers=[1, 3])
        leaderless = wait_state(c, topic, lambda l, isr, r: l == -1, "no leader", exclude=(2,))
        assert 3 not in leaderless[1], leaderless
        # While the topic says false, nothing is elected (the controller's tick runs every
        # few hundred ms; this watches several of them).
        for _ in range(15):
            l, isr, _r = state(c, topic, exclude=(2,))
            assert l == -1, f"leader {l} (ISR {isr}) elected with unclean election disabled"
            time.sleep(0.2)
        assert unclean_elections(c) == 0

        set_topic_config(c, topic, "unclean.leader.election.enable", "true")
        l, isr, _r = wait_state(c, topic, lambda l, isr, r: l == 3, "broker 3 leading",
                                exclude=(2,))
        assert isr == [3], isr
        assert unclean_elections(c) == 1
        logged = [n for n in c.running_brokers() if "unclean leader election: broker 3 leads "
                  f"{topic}-0" in n.proc.stderr_text()]
        assert logged, "no controller logged the unclean election"

        # The new leader serves its own log: the records only broker 2 had are gone, and
        # writes go on from its log end.
        p = kc.producer(c.bootstrap, acks="all")
        d = kc.Deliveries()
        for i in range(5):
            kc.produce(p, topic, f"after-{i}".encode(), d, partition=0)
        kc.flush(p)
        d.assert_no_errors()
        got = kc.consume_range(c.bootstrap, topic, {0: (0, 5)}, timeout=OP)
        assert [r.value for r in got[0]] == [f"after-{i}".encode() for i in range(5)]
    finally:
        c.cleanup()


def test_auto_leader_rebalance_returns_leadership_to_the_preferred_replica(request, tmp_path,
                                                                           tern_bin):
    c = make_cluster(request, tmp_path, tern_bin,
                     extra={"auto.leader.rebalance.enable": "true",
                            "leader.imbalance.check.interval.seconds": "1"})
    try:
        c.start()
        topic = "rebalanced"
        leader, _isr, replicas = create(c, topic)
        preferred = replicas[0]
        assert leader == preferred
        c.node(preferred).kill9()
        moved, _, _ = wait_state(c, topic, lambda l, i, r: l >= 0 and l != preferred,
                                 "another leader", exclude=(preferred,))
        c.node(preferred).start()
        c.wait_ready()
        # No ElectLeaders: the controller's imbalance check moves it back once the preferred
        # replica has caught up and rejoined the ISR.
        wait_state(c, topic, lambda l, i, r: l == preferred and preferred in i,
                   f"the preferred replica {preferred} leading again (from {moved})")
        # The partition serves writes on its preferred leader.
        p = kc.producer(c.bootstrap, acks="all")
        d = kc.Deliveries()
        kc.produce(p, topic, b"back", d, partition=0)
        kc.flush(p)
        d.assert_no_errors()
    finally:
        c.cleanup()


def test_sigterm_of_the_last_node_exits_cleanly(cluster3):
    c = cluster3
    create(c, "last")
    for nid in (1, 2):
        rc = c.node(nid).stop()
        assert rc == 0, f"node {nid}: exit code {rc}\n{c.node(nid).stderr_tail(30)}"
    # Node 3 is alone: no quorum can answer its controlled shutdown; it stops anyway.
    last = c.node(3)
    rc = last.stop()
    assert rc == 0, f"exit code {rc}\n{last.stderr_tail(30)}"
    text = last.proc.stderr_text()
    assert "controlled shutdown not acknowledged" in text, last.stderr_tail(30)
    assert "tern stopped cleanly" in text, last.stderr_tail(30)
