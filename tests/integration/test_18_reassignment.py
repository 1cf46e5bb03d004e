"""Issue 11, partition reassignment (KIP-455), with real processes (3 nodes, `--shards 1`),
while an idempotent acks=all confluent-kafka producer writes to the partition being moved:
- RF1 -> RF3 through kafka-python's KafkaAdminClient.alter_partition_reassignments: the two
  new replicas catch up and join the ISR, list_partition_reassignments shows the move while it
  is on and nothing after; final replicas [1, 2, 3], ISR all three.
- Replacing broker 1 (the leader) by broker 3 in an RF2 topic with `tern topic reassign
  --replicas 3,2 --throttle ... --wait`: the leadership moves to broker 3, broker 1 deletes
  its copy, and the CLI removes the throttle it set.
- A move held in progress by `follower.replication.throttled.rate=0` (deterministic: the new
  replica never fetches): `tern topic reassign --list` and list_partition_reassignments show
  it, a cancel reverts it, a second cancel is NO_REASSIGNMENT_IN_PROGRESS; unknown brokers and
  partitions get Kafka's codes.
After each move every acknowledged record reads back exactly once and in order.

Every process is started through cluster.py and killed at teardown; every wait is bounded
(the bounds are ceilings, not measured thresholds).
"""

import subprocess
import time

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType
from kafka import KafkaAdminClient, TopicPartition
from kafka import errors as kerr

import kclients as kc

from test_16_leadership import EXTRA, Load, assert_ledger, wait_state  # noqa: F401

OP = 60.0

pytestmark = pytest.mark.timeout(300)


def kadmin(c):
    return KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30_000)


def wait_no_move(a, tp, timeout=OP):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = a.list_partition_reassignments([tp])
        if tp not in last:
            return
        time.sleep(0.2)
    raise AssertionError(f"the move of {tp} did not complete within {timeout}s: {last}")


def create(c, topic, assignment, min_isr=1):
    """One partition placed on `assignment` (its first broker leads), the ISR full."""
    a = kc.admin(c.bootstrap)
    nt = NewTopic(topic, num_partitions=1, replica_assignment=[assignment],
                  config={"min.insync.replicas": str(min_isr)})
    for f in a.create_topics([nt], request_timeout=OP).values():
        f.result(timeout=OP)
    kc.wait_for_topic(c.bootstrap, topic, 1)
    return wait_state(c, topic, lambda l, i, r: l >= 0 and len(i) == len(assignment),
                      "a full ISR")


def tern(tern_bin, *args):
    out = subprocess.run([str(tern_bin), *args], capture_output=True, text=True, timeout=OP * 2)
    return out


def test_rf1_to_rf3_under_idempotent_acks_all_load(cluster3):
    c = cluster3
    topic = "grow"
    create(c, topic, [1])
    load = Load(c, topic)
    load.run(1.0)
    a = kadmin(c)
    tp = TopicPartition(topic, 0)
    try:
        assert a.alter_partition_reassignments({tp: [1, 2, 3]}) == {tp: None}
        load.run(1.0)
        wait_no_move(a, tp)
        load.run(1.0)
        load.flush()
        leader, isr, replicas = wait_state(c, topic, lambda l, i, r: len(i) == 3,
                                           "all three replicas in the ISR")
        assert (replicas, isr, leader) == ([1, 2, 3], [1, 2, 3], 1)
        assert a.list_partition_reassignments() == {}
    finally:
        a.close()
    assert_ledger(c, load)
    # Every replica holds the data: the broker that led it before is killed, and the ledger
    # still reads back from the others.
    c.node(1).kill9()
    wait_state(c, topic, lambda l, i, r: l in (2, 3), "a new leader", exclude=(1,))
    assert_ledger(c, load)


def test_replace_the_leader_with_the_cli_under_load(cluster3, tern_bin):
    c = cluster3
    topic = "swap"
    create(c, topic, [1, 2])
    load = Load(c, topic)
    load.run(1.5)
    out = tern(tern_bin, "topic", "reassign", topic, "-p", "0", "--replicas", "3,2",
               "--throttle", "50000000", "--wait", "-b", c.bootstrap)
    load.run(1.0)
    load.flush()
    assert out.returncode == 0, out.stderr
    assert f"{topic}-0: done: replicas [3, 2]" in out.stdout, out.stdout
    assert "throttle removed" in out.stdout, out.stdout
    leader, isr, replicas = wait_state(c, topic, lambda l, i, r: l == 3 and len(i) == 2,
                                       "broker 3 leading with a full ISR")
    assert (replicas, isr) == ([3, 2], [2, 3])
    assert_ledger(c, load)
    # Broker 1 has no replica any more: its copy is deleted.
    node1 = c.node(1)
    deadline = time.monotonic() + OP
    while time.monotonic() < deadline and "swap-0: no replica on this broker any more; " \
            "deleting its log" not in node1.proc.stderr_text():
        time.sleep(0.2)
    assert "swap-0: no replica on this broker any more; deleting its log" in \
        node1.proc.stderr_text(), node1.stderr_tail(30)
    # The throttle the CLI set is gone again (Kafka's default: unlimited).
    admin = kc.admin(c.bootstrap)
    res = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")])
    configs = list(res.values())[0].result(timeout=OP)
    for key in ("leader.replication.throttled.rate", "follower.replication.throttled.rate"):
        assert configs[key].value == str(2**63 - 1), (key, configs[key].value)


def test_cancel_list_and_errors(cluster3, tern_bin):
    c = cluster3
    topic = "held"
    create(c, topic, [1])
    load = Load(c, topic)
    load.run(1.0)
    # The new replica may not fetch at all: the move stays in progress until cancelled.
    out = tern(tern_bin, "cluster", "alter-config", "--set",
               "follower.replication.throttled.rate=0", "-b", c.bootstrap)
    assert out.returncode == 0, out.stderr
    a = kadmin(c)
    tp = TopicPartition(topic, 0)
    try:
        assert a.alter_partition_reassignments({tp: [1, 2]}) == {tp: None}
        assert a.list_partition_reassignments([tp]) == {
            tp: {"replicas": [1, 2], "adding_replicas": [2], "removing_replicas": []}}
        listed = tern(tern_bin, "topic", "reassign", topic, "--list", "-b", c.bootstrap)
        assert listed.returncode == 0, listed.stderr
        assert f"{topic}-0: replicas [1, 2] adding [2] removing []" in listed.stdout
        load.run(1.0)
        _, isr, replicas = wait_state(c, topic, lambda l, i, r: r == [1, 2], "the union")
        assert isr == [1], "the held replica never joined"
        # Kafka's codes.
        bad = a.alter_partition_reassignments({
            TopicPartition(topic, 0): [1, 9],
            TopicPartition(topic, 7): [1],
            TopicPartition("nope", 0): [1],
        })
        assert bad == {TopicPartition(topic, 0): kerr.InvalidReplicationAssignmentError,
                       TopicPartition(topic, 7): kerr.UnknownTopicOrPartitionError,
                       TopicPartition("nope", 0): kerr.UnknownTopicOrPartitionError}, bad
        assert a.list_partition_reassignments([tp])[tp]["adding_replicas"] == [2], \
            "a refused change leaves the move alone"
        # Cancel (the CLI): back to [1].
        out = tern(tern_bin, "topic", "reassign", topic, "-p", "0", "--cancel", "-b",
                   c.bootstrap)
        assert out.returncode == 0, out.stderr
        assert a.list_partition_reassignments() == {}
        assert a.alter_partition_reassignments({tp: None}) == {
            tp: kerr.NoReassignmentInProgressError}
        load.run(1.0)
        load.flush()
        leader, isr, replicas = wait_state(c, topic, lambda l, i, r: r == [1], "reverted")
        assert (leader, isr) == (1, [1])
    finally:
        a.close()
    assert_ledger(c, load)
