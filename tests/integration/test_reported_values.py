"""Values the admin APIs report are computed, not literals: CreateTopics' replication factor
(and Kafka's INVALID_REPLICATION_FACTOR / INVALID_REPLICA_ASSIGNMENT checks),
DescribeCluster's authorized operations, DescribeLogDirs' sizes and offset lag.

Raw requests are encoded and decoded by kafka-python's codec (generated from Kafka's JSON
schemas); the admin-client checks go through confluent-kafka."""

import pytest
from confluent_kafka.admin import AclOperation
from kafka.protocol.admin import (CreateTopicsRequest, CreateTopicsResponse,
                                  DescribeClusterRequest, DescribeClusterResponse,
                                  DescribeLogDirsRequest, DescribeLogDirsResponse)

import kclients as kc
import kwire

ERR_INVALID_REPLICATION_FACTOR = 38
ERR_INVALID_REPLICA_ASSIGNMENT = 39
ERR_INVALID_REQUEST = 42
# AclEntry.supportedOperations(CLUSTER): what Kafka without an authorizer reports.
CLUSTER_OPS = {AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
               AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
               AclOperation.DESCRIBE}


def _create(conn, topics, version=7, validate_only=False):
    """CreateTopics; topics = [(name, partitions, replication_factor, {partition: [broker]})]."""
    T = CreateTopicsRequest.CreatableTopic
    A = T.CreatableReplicaAssignment
    req = CreateTopicsRequest(
        topics=[T(name=n, num_partitions=p, replication_factor=rf, configs=[],
                  assignments=[A(partition_index=i, broker_ids=b) for i, b in sorted(a.items())])
                for n, p, rf, a in topics],
        timeout_ms=30_000, validate_only=validate_only)
    resp = kwire.kp_call(conn, req, CreateTopicsResponse, version)
    return {t.name: (t.error_code, t.num_partitions, t.replication_factor) for t in resp.topics}


def test_create_topics_reports_the_replication_factor_it_created(broker_factory, tmp_path):
    b = broker_factory("--num-partitions", "3")
    with kwire.Conn(b.port) as conn:
        got = _create(conn, [
            ("rf-explicit", 2, 1, {}),
            ("rf-default", -1, -1, {}),
            ("rf-manual", -1, -1, {0: [0], 1: [0]}),
            ("rf-too-many", 1, 3, {}),
            ("rf-zero", 1, 0, {}),
            ("rf-unknown-broker", -1, -1, {0: [0], 1: [7]}),
            ("rf-repeated-broker", -1, -1, {0: [0, 0]}),
            ("rf-gap", -1, -1, {0: [0], 2: [0]}),
            ("rf-both", 2, -1, {0: [0], 1: [0]}),
        ])
    assert got == {
        "rf-explicit": (0, 2, 1),
        "rf-default": (0, 3, 1),
        "rf-manual": (0, 2, 1),
        "rf-too-many": (ERR_INVALID_REPLICATION_FACTOR, -1, -1),
        "rf-zero": (ERR_INVALID_REPLICATION_FACTOR, -1, -1),
        "rf-unknown-broker": (ERR_INVALID_REPLICA_ASSIGNMENT, -1, -1),
        "rf-repeated-broker": (ERR_INVALID_REPLICA_ASSIGNMENT, -1, -1),
        "rf-gap": (ERR_INVALID_REPLICA_ASSIGNMENT, -1, -1),
        "rf-both": (ERR_INVALID_REQUEST, -1, -1),
    }
    topics = kc.all_topics(b.bootstrap)
    assert {t for t in topics if t.startswith("rf-")} == {"rf-explicit", "rf-default",
                                                           "rf-manual"}
    assert len(topics["rf-manual"].partitions) == 2
    assert all(p.replicas == [0] for p in topics["rf-manual"].partitions.values())


def test_default_replication_factor_beyond_the_live_brokers_is_refused(broker_factory, tmp_path):
    """-1 means default.replication.factor: with 2 and one broker, Kafka refuses the topic."""
    cfg = tmp_path / "rf.properties"
    cfg.write_text("default.replication.factor=2\n")
    b = broker_factory(config=cfg)
    with kwire.Conn(b.port) as conn:
        got = _create(conn, [("rf2-default", 1, -1, {}), ("rf2-explicit", 1, 1, {})])
        assert got == {"rf2-default": (ERR_INVALID_REPLICATION_FACTOR, -1, -1),
                       "rf2-explicit": (0, 1, 1)}
        # validate_only answers the same without creating anything.
        got = _create(conn, [("rf2-check", 4, 1, {})], validate_only=True)
        assert got == {"rf2-check": (0, 4, 1)}
    assert "rf2-check" not in kc.all_topics(b.bootstrap)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_describe_cluster_authorized_operations(broker, version):
    """(The admin clients' describe_cluster reads these bits from Metadata, not from here.)"""
    with kwire.Conn(broker.port) as conn:
        # kafka-python decodes the bitfield into the set of AclOperation codes, and i32::MIN
        # ("not requested") into None.
        for include, want in ((False, None), (True, {op.value for op in CLUSTER_OPS})):
            req = DescribeClusterRequest(include_cluster_authorized_operations=include)
            resp = kwire.kp_call(conn, req, DescribeClusterResponse, version)
            assert resp.error_code == 0
            assert resp.authorized_operations == want, (include, resp)


def test_describe_log_dirs_sizes_and_offset_lag(broker):
    topic = "logdirs"
    kc.create_topic(broker.bootstrap, topic, 2)
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks="all")
    for i in range(30):
        kc.produce(p, topic, b"x" * 100, d, partition=0)
    kc.flush(p)
    d.assert_no_errors()
    T = DescribeLogDirsRequest.DescribableLogDirTopic
    with kwire.Conn(broker.port) as conn:
        for version in (1, 4):
            req = DescribeLogDirsRequest(topics=[T(topic=topic, partitions=[0, 1])])
            resp = kwire.kp_call(conn, req, DescribeLogDirsResponse, version)
            (result,) = resp.results
            assert result.error_code == 0
            ((name, parts),) = [(t.name, t.partitions) for t in result.topics]
            assert name == topic
            by_index = {q.partition_index: q for q in parts}
            assert sorted(by_index) == [0, 1]
            on_disk = sum(f.stat().st_size for f in broker.partition_dir(topic, 0).glob("*.log"))
            assert 30 * 100 < by_index[0].partition_size <= on_disk
            assert by_index[1].partition_size == 0
            # A leader's log end is never behind its own high watermark: Kafka's
            # max(0, high watermark - log end offset) is 0.
            assert [by_index[q].offset_lag for q in (0, 1)] == [0, 0]
            assert not any(by_index[q].is_future_key for q in (0, 1))
