"""Issue 11's fault suite: a 3-broker loopback cluster (combined nodes, `--shards 1`), an RF3
topic of 3 partitions with min.insync.replicas=2, an idempotent acks=all confluent-kafka
producer keeping a ledger of acknowledged records (faultledger.py), and a group consumer
reading everything back after every fault: every acknowledged record exactly once, at its
offset, in order per partition.

Faults: kill -9 of a partition leader (20 rounds), kill -9 of a follower, SIGSTOP of a leader
past the broker session timeout then SIGCONT (the old leader must refuse writes and rejoin as a
follower), network faults through faultproxy.py (the leader isolated by a blackhole on every
link to and from it; delayed and reset links), and the whole cluster killed and restarted.

Every process is started through cluster.py and killed at teardown, every proxy closed; every
wait is bounded (the bounds are ceilings, not measured thresholds). Each test prints its
ledger counts (`pytest -s` shows them).
"""

import time

import pytest
from confluent_kafka.admin import NewTopic

import kclients as kc
import kwire
from cluster import Cluster, metadata
from faultledger import Ledger
from faultproxy import BLACKHOLE, DELAY, DROP, PASS, ProxyGroup

OP = 60.0
TOPIC = "faults"
PARTITIONS = 3
LEADER_KILL_ROUNDS = 20
# A short session timeout and lag bound so faults are noticed quickly; groups start at once.
EXTRA = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
         "replica.lag.time.max.ms": 3000, "group.initial.rebalance.delay.ms": 0,
         "min.insync.replicas": 2}
ERR_NONE = 0

pytestmark = pytest.mark.timeout(420)


def report(name, ledger, extra=""):
    """Prints the ledger line."""
    print(f"\nLEDGER {name}: acked={ledger.acked_count()} read_back={ledger.totals['read']} "
          f"verifications={ledger.verifications} checked={ledger.totals['checks']} "
          f"group_reads={ledger.group_reads} group_failures={len(ledger.group_failures)} "
          f"delivery_errors={len(ledger.errors)}{extra}", flush=True)


def assert_group_reads(ledger):
    """Every group read-back of the test succeeded (group coordinators fail over with the
    leadership of their `__consumer_offsets` partition)."""
    assert not ledger.group_failures, f"group read-back failed: {ledger.group_failures[0][:300]}"


def states_in(md):
    """{partition: (leader, leader epoch, sorted isr)} of TOPIC in a Metadata answer, or None
    when it does not have all of TOPIC's partitions."""
    for t in md.topics:
        if t.name == TOPIC and len(t.partitions) == PARTITIONS:
            return {int(p.partition_index): (int(p.leader_id), int(p.leader_epoch),
                                             sorted(int(x) for x in p.isr_nodes))
                    for p in t.partitions}
    return None


def partition_states(c, exclude=()):
    """{partition: (leader, leader epoch, sorted isr)} as a running broker reports it."""
    last = None
    for b in c.running_brokers(exclude=exclude):
        try:
            md = metadata(b.broker_port, [TOPIC])
        except Exception as e:  # noqa: BLE001 - another broker may answer
            last = repr(e)
            continue
        states = states_in(md)
        if states is not None:
            return states
    raise AssertionError(f"no broker answered Metadata for {TOPIC}: {last}")


def agreed_states(c, exclude=()):
    """The partition states when every running broker reports the same ones (a broker that
    was cut off may still answer from its old view for a moment after it is reachable again),
    else None."""
    views = []
    for b in c.running_brokers(exclude=exclude):
        try:
            views.append(states_in(metadata(b.broker_port, [TOPIC])))
        except Exception:  # noqa: BLE001 - not answering yet: no agreement this round
            return None
    if not views or views[0] is None or any(v != views[0] for v in views):
        return None
    return views[0]


def wait_states(c, pred, what, timeout=OP, exclude=(), agree=False):
    """Waits until `pred` holds for the partition states (with `agree`, as every running
    broker reports them); returns them."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if agree:
                last = agreed_states(c, exclude=exclude)
            else:
                last = partition_states(c, exclude=exclude)
            if last is not None and pred(last):
                return last
        except AssertionError as e:
            last = str(e)
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s; last state {last}")


def full_isr(states):
    return all(l >= 0 and len(isr) == 3 for l, _, isr in states.values())


def create(c):
    a = kc.admin(c.bootstrap)
    fs = a.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3,
                                   config={"min.insync.replicas": "2"})], request_timeout=OP)
    for f in fs.values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, TOPIC, PARTITIONS)
    return wait_states(c, full_isr, "RF3 with a full ISR on every partition")


def new_leader(c, part, old_leader, old_epoch):
    """Waits (asking only the other brokers) until `part` has a leader other than
    `old_leader` in a later epoch; returns the partition states."""
    return wait_states(
        c, lambda s: s[part][0] >= 0 and s[part][0] != old_leader and s[part][1] > old_epoch,
        f"a new leader of partition {part} after losing {old_leader}",
        exclude=(old_leader,))


def produce_raw(port, partition, value, acks=-1, timeout_ms=5000):
    """One Produce v3 straight to a broker's port; its error code (None if no answer)."""
    batch = kwire.record_batch([(None, value)])
    try:
        with kwire.Conn(port, timeout=timeout_ms / 1000 + 10) as conn:
            err, _ = kwire.produce_v3(conn, TOPIC, partition, batch, acks=acks,
                                      timeout_ms=timeout_ms)
            return err
    except (OSError, kwire.ConnectionClosed):
        return None


# ------------------------------------------------------------------ kill -9 of leaders
def test_leader_kill9_rounds(cluster3):
    c = cluster3
    states = create(c)
    ledger = Ledger(c.bootstrap, TOPIC, PARTITIONS)
    ledger.send(300)
    ledger.flush()
    ledger.verify("before the first kill")
    leaders_seen = set()
    started = time.monotonic()
    for round_ in range(LEADER_KILL_ROUNDS):
        part = round_ % PARTITIONS
        leader, epoch, _ = states[part]
        victim = c.node(leader)
        ledger.send(150)           # in flight while the leader dies
        victim.kill9()
        states = new_leader(c, part, leader, epoch)
        leaders_seen.add(states[part][0])
        ledger.send(150)
        ledger.flush()
        ledger.verify(f"round {round_}: after kill -9 of {leader}")
        victim.restart()
        states = wait_states(c, full_isr, f"round {round_}: {leader} back in every ISR")
    ledger.verify("after the last rejoin")
    report("leader_kill9", ledger, f" rounds={LEADER_KILL_ROUNDS} "
           f"leaders={sorted(leaders_seen)} seconds={time.monotonic() - started:.1f}")
    assert ledger.acked_count() == 300 + 300 * LEADER_KILL_ROUNDS
    assert len(leaders_seen) == 3, f"leadership moved only among {leaders_seen}"
    assert_group_reads(ledger)


# ------------------------------------------------------------------ empty partitions rejoin
EMPTY_TOPIC = "faults-empty"
EMPTY_PARTITIONS = 6


def empty_states(c):
    """{partition: (leader, sorted isr)} of EMPTY_TOPIC as a running broker reports it."""
    for b in c.running_brokers():
        try:
            md = metadata(b.broker_port, [EMPTY_TOPIC])
        except Exception:  # noqa: BLE001 - another broker may answer
            continue
        for t in md.topics:
            if t.name == EMPTY_TOPIC and len(t.partitions) == EMPTY_PARTITIONS:
                return {int(p.partition_index): (int(p.leader_id),
                                                 sorted(int(x) for x in p.isr_nodes))
                        for p in t.partitions}
    return None


def wait_empty(c, pred, what):
    deadline = time.monotonic() + OP
    last = None
    while time.monotonic() < deadline:
        last = empty_states(c)
        if last is not None and pred(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {OP}s; last state {last}")


def test_empty_partitions_take_a_restarted_replica_back_into_the_isr(cluster3):
    """A replica that led an EMPTY partition (its epoch cache notes that epoch, no record),
    killed and restarted, must rejoin the ISR of the partitions whose leadership moved away
    from it. It fetches with that old epoch as its last fetched epoch, which the new leader's
    log never saw; the leader used to answer a DivergingEpoch of (-1, -1), which reads as
    "no divergence", so the follower idled and the ISR stayed at two, then one after the
    next kill (empty `__consumer_offsets` partitions refusing every group under
    min.insync.replicas=2)."""
    c = cluster3
    a = kc.admin(c.bootstrap)
    fs = a.create_topics([NewTopic(EMPTY_TOPIC, num_partitions=EMPTY_PARTITIONS,
                                   replication_factor=3)], request_timeout=OP)
    for f in fs.values():
        f.result(timeout=OP)
    full = lambda s: all(l >= 0 and len(isr) == 3 for l, isr in s.values())  # noqa: E731
    states = wait_empty(c, full, "RF3 with a full ISR on every empty partition")
    for victim_id in sorted(c.nodes)[:2]:
        led = [p for p, (l, _) in states.items() if l == victim_id]
        assert led, f"broker {victim_id} leads none of {states}"
        victim = c.node(victim_id)
        victim.kill9()
        wait_empty(c, lambda s: all(victim_id not in isr and l != victim_id
                                    for l, isr in s.values()),
                   f"{victim_id} out of every ISR")
        victim.restart()
        states = wait_empty(c, full, f"{victim_id} back in the ISR of every empty partition "
                                     f"(it led {led})")


# ------------------------------------------------------------------ kill -9 of a follower

def test_follower_kill9(cluster3):
    c = cluster3
    states = create(c)
    ledger = Ledger(c.bootstrap, TOPIC, PARTITIONS)
    ledger.send(200)
    ledger.flush()
    follower = next(n for n in c.broker_nodes() if n.node_id != states[0][0])
    follower.kill9()
    fid = follower.node_id
    shrunk = wait_states(
        c, lambda s: all(fid not in isr and len(isr) == 2 and l != fid
                         for l, _, isr in s.values()),
        f"every ISR without {fid}", exclude=(fid,))
    # The leaders did not move for the partitions the follower did not lead.
    for p, (l, e, _) in states.items():
        if l != fid:
            assert shrunk[p][0] == l, f"partition {p} leader moved {l} -> {shrunk[p][0]}"
    ledger.send(400)   # writes go on with two in-sync replicas
    ledger.flush()
    ledger.verify(f"with {fid} down")
    follower.restart()
    wait_states(c, full_isr, f"{fid} back in every ISR")
    ledger.send(200)
    ledger.flush()
    ledger.verify(f"after {fid} rejoined")
    report("follower_kill9", ledger)
    assert ledger.acked_count() == 800
    assert_group_reads(ledger)


# ------------------------------------------------------------------ SIGSTOP of a leader

def test_sigstop_leader_is_fenced_and_rejoins(cluster3):
    c = cluster3
    states = create(c)
    ledger = Ledger(c.bootstrap, TOPIC, PARTITIONS, request_timeout_ms=5000)
    ledger.send(200)
    ledger.flush()
    leader, epoch, _ = states[0]
    old = c.node(leader)
    old.sigstop()
    try:
        ledger.send(200)
        # Past the session timeout (3 s) the controller fences it and moves its leaderships.
        after = new_leader(c, 0, leader, epoch)
        assert all(l != leader for l, _, _ in after.values()), after
        ledger.flush()
        ledger.verify(f"{leader} stopped")
    finally:
        old.sigcont()
    # Straight after SIGCONT, before it may have heard anything: the old leader must not
    # acknowledge an acks=all write to the partition it led (fencing).
    zombie_err = produce_raw(old.broker_port, 0, b"p0-zombie", acks=-1)
    assert zombie_err != ERR_NONE, "the old leader acknowledged an acks=all write after SIGCONT"
    wait_states(c, lambda s: full_isr(s) and s[0][0] != leader and leader in s[0][2],
                f"{leader} back in the ISR as a follower")
    # And it answers as a follower now: NOT_LEADER_OR_FOLLOWER (6).
    assert produce_raw(old.broker_port, 0, b"p0-zombie", acks=-1) == 6
    ledger.send(200)
    ledger.flush()
    counts = ledger.verify(f"after {leader} rejoined")
    report("sigstop_leader", ledger, f" zombie_produce_error={zombie_err}")
    assert counts["acked"] == 600
    assert counts["read"] == 600, "a write the old leader took is in the log"
    assert_group_reads(ledger)


# ------------------------------------------------------------------ whole cluster kill -9
def test_whole_cluster_kill9_and_restart(cluster3):
    c = cluster3
    create(c)
    ledger = Ledger(c.bootstrap, TOPIC, PARTITIONS)
    for round_ in range(2):
        ledger.send(500)
        ledger.flush()
        ledger.send(100)   # in flight at the kill: each may or may not be acknowledged
        for n in c.broker_nodes():
            n.kill9()
        c.start()   # same ports and data dirs; the producer retries meanwhile
        wait_states(c, full_isr, f"round {round_}: every partition led with a full ISR")
        ledger.flush()
        ledger.verify(f"round {round_}: after the whole cluster restarted")
    ledger.send(300)
    ledger.flush()
    ledger.verify("writes after the restarts")
    report("whole_cluster_kill9", ledger)
    assert ledger.acked_count() == 2 * 600 + 300
    assert_group_reads(ledger)


# ------------------------------------------------------------------ network faults (proxy)
@pytest.fixture
def proxied3(request, tmp_path, tern_bin):
    """A cluster whose every inter-node byte goes through faultproxy: controller traffic
    from node i to node j through proxy ("ctl", i, j), and each broker listener (replica
    fetches and clients, through advertised.listeners) through proxy ("brk", j)."""
    track = request.node.__dict__.setdefault("_tern_brokers", [])
    c = Cluster(tern_bin, tmp_path / "c", 3, "combined", extra=EXTRA, track=track)
    proxies = ProxyGroup()
    try:
        ids = sorted(c.nodes)
        for j in ids:
            proxies.add(("brk", j), c.node(j).broker_port)
            for i in ids:
                if i != j:
                    proxies.add(("ctl", i, j), c.node(j).controller_port)
        for i in ids:
            n = c.node(i)
            n.extra["advertised.listeners"] = f"PLAINTEXT://127.0.0.1:{proxies[('brk', i)].port}"
            n.extra["controller.quorum.voters"] = ",".join(
                f"{j}@127.0.0.1:"
                f"{c.node(j).controller_port if j == i else proxies[('ctl', i, j)].port}"
                for j in ids)
        c.start()
        yield c, proxies
    finally:
        c.cleanup()
        proxies.close()


def links_of(proxies, node_id):
    """Every proxy carrying traffic to or from `node_id`."""
    return [k for k in proxies.proxies
            if (k[0] == "brk" and k[1] == node_id) or (k[0] == "ctl" and node_id in k[1:])]

def proxied_bootstrap(c, proxies, exclude=()):
    """The broker listeners through their proxies: a client cut off along with the node."""
    return ",".join(f"127.0.0.1:{proxies[('brk', n.node_id)].port}" for n in c.broker_nodes()
                    if n.node_id not in exclude)


def test_network_partition_of_a_leader(proxied3):
    c, proxies = proxied3
    states = create(c)
    ledger = Ledger(proxied_bootstrap(c, proxies), TOPIC, PARTITIONS, request_timeout_ms=5000)
    ledger.send(300)
    ledger.flush()
    ledger.verify("before the partition")
    leader, epoch, _ = states[0]
    cut = links_of(proxies, leader)
    proxies.set_mode(cut, BLACKHOLE)
    try:
        ledger.send(300)
        # Cut off from the controller past the session timeout: fenced, leaderships moved.
        after = new_leader(c, 0, leader, epoch)
        assert all(l != leader for l, _, _ in after.values()), after
        ledger.flush()
        # The read-back bootstraps from the majority side only.
        ledger.bootstrap = proxied_bootstrap(c, proxies, exclude=(leader,))
        ledger.verify(f"{leader} partitioned away")
        ledger.bootstrap = proxied_bootstrap(c, proxies)
    finally:
        proxies.set_mode(cut, PASS)
    wait_states(c, lambda s: full_isr(s) and s[0][0] != leader,
                f"{leader} back in every ISR as a follower after the partition healed")
    ledger.send(300)
    ledger.flush()
    ledger.verify(f"after {leader} rejoined")
    report("network_partition_blackhole", ledger,
           f" accepted_connections={sum(p.accepted for p in proxies.proxies.values())}")
    assert ledger.acked_count() == 900
    assert_group_reads(ledger)

def test_delayed_and_dropped_links(proxied3):
    c, proxies = proxied3
    states = create(c)
    ledger = Ledger(proxied_bootstrap(c, proxies), TOPIC, PARTITIONS, request_timeout_ms=5000)
    everything = list(proxies.proxies)
    # Every inter-node link 20 ms slower each way: acks=all still completes, in order.
    proxies.set_mode(everything, DELAY, delay_s=0.02)
    try:
        ledger.send(400)
        ledger.flush()
    finally:
        proxies.set_mode(everything, PASS)
    ledger.verify("with delayed links")
    # Every link of a leader reset, and new connections refused, for less than the session
    # timeout: connections come back, nothing acknowledged is lost, no duplicates.
    leader = states[0][0]
    cut = links_of(proxies, leader)
    ledger.send(200)
    proxies.set_mode(cut, DROP)
    try:
        time.sleep(1.0)
        ledger.send(200)
    finally:
        proxies.set_mode(cut, PASS)
    ledger.flush()
    # Every broker's view, the cut-off leader's included: right after its links come back it
    # may still report itself leader with its old ISR (and answer with its old high watermark).
    wait_states(c, full_isr, "a full ISR everywhere after the drops", agree=True)
    ledger.verify(f"after {leader}'s links were dropped")
    report("network_delay_and_drop", ledger)
    assert ledger.acked_count() == 800
    assert_group_reads(ledger)
