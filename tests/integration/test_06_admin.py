"""CreateTopics / DeleteTopics / CreatePartitions and topic auto-creation."""

import re
import time

import pytest
from confluent_kafka import KafkaException

import kclients as kc
import kwire
from kclients import KafkaError, NewPartitions, NewTopic


def _partition_dirs(broker, topic):
    pat = re.compile(re.escape(topic) + r"-\d+$")
    return sorted(p.name for p in broker.log_dir.iterdir() if pat.fullmatch(p.name))


def _produce_one_per_partition(bootstrap, topic, partitions, tag):
    d = kc.Deliveries()
    p = kc.producer(bootstrap, acks="all")
    for q in range(partitions):
        kc.produce(p, topic, f"{tag}-{q}".encode(), d, partition=q)
    kc.flush(p)
    d.assert_no_errors()
    return d


def test_create_topics_and_already_exists(broker):
    topic = "adm-create"
    kc.create_topic(broker.bootstrap, topic, 3)
    a = kc.admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                         request_timeout=30)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, str(ei.value)
    # Still 3 partitions, all usable.
    kc.wait_for_topic(broker.bootstrap, topic, 3)
    _produce_one_per_partition(broker.bootstrap, topic, 3, "x")
    assert _partition_dirs(broker, topic) == [f"{topic}-{q}" for q in range(3)]


def test_delete_topics_removes_data_and_metadata(broker):
    topic = "adm-delete"
    keep = "adm-delete-keep"  # shares the prefix; must survive
    kc.create_topic(broker.bootstrap, topic, 2)
    kc.create_topic(broker.bootstrap, keep, 1)
    _produce_one_per_partition(broker.bootstrap, topic, 2, "del")
    _produce_one_per_partition(broker.bootstrap, keep, 1, "keep")
    assert _partition_dirs(broker, topic) == [f"{topic}-0", f"{topic}-1"]

    a = kc.admin(broker.bootstrap)
    a.delete_topics([topic], request_timeout=30)[topic].result(timeout=30)
    kc.wait_topic_absent(broker.bootstrap, topic)
    deadline = time.monotonic() + 30
    leftovers = []
    for _ in range(1000):
        leftovers = [p.name for p in broker.log_dir.iterdir()
                     if p.name.startswith(topic + "-") and not p.name.startswith(keep)]
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not leftovers, f"partition directories left on disk after delete: {leftovers}"
    assert _partition_dirs(broker, keep) == [f"{keep}-0"]
    # (A metadata request naming the topic must not auto-create it here.)
    with kwire.Conn(broker.port) as conn:
        md = kwire.metadata_v4(conn, [topic], allow_auto_topic_creation=False)
    assert md[topic][0] == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION, f"deleted topic in metadata: {md}"

    # The other topic is untouched; the name can be reused and starts empty.
    assert kc.watermarks(broker.bootstrap, keep, 0) == (0, 1)
    kc.create_topic(broker.bootstrap, topic, 1)
    assert kc.watermarks(broker.bootstrap, topic, 0) == (0, 0)

    # Deleting an unknown topic reports UNKNOWN_TOPIC_OR_PART.
    with pytest.raises(KafkaException) as ei:
        a.delete_topics(["adm-never-existed"], request_timeout=30)["adm-never-existed"].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, str(ei.value)


def test_create_partitions(broker):
    topic = "adm-grow"
    kc.create_topic(broker.bootstrap, topic, 2)
    _produce_one_per_partition(broker.bootstrap, topic, 2, "before")
    a = kc.admin(broker.bootstrap)
    a.create_partitions([NewPartitions(topic, 5)], request_timeout=30)[topic].result(timeout=30)
    kc.wait_for_topic(broker.bootstrap, topic, 5)
    d = _produce_one_per_partition(broker.bootstrap, topic, 5, "after")
    assert sorted((x.partition, x.offset) for x in d.acked) == \
        [(0, 1), (1, 1), (2, 0), (3, 0), (4, 0)]
    recs, marks = kc.consume_all(broker.bootstrap, topic, range(5))
    assert [r.value for r in recs[0]] == [b"before-0", b"after-0"]
    assert [r.value for r in recs[4]] == [b"after-4"]
    krecs = kc.kp_consume_range(broker.bootstrap, topic, {3: (0, 1)})
    assert [r.value for r in krecs[3]] == [b"after-3"]
    # Shrinking, or asking for the current count, is rejected with Kafka's INVALID_PARTITIONS.
    for count in (3, 5):
        with pytest.raises(KafkaException) as ei:
            a.create_partitions([NewPartitions(topic, count)],
                                request_timeout=30)[topic].result(timeout=30)
        assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS, str(ei.value)
    kc.wait_for_topic(broker.bootstrap, topic, 5)


def test_auto_create_on_produce(broker_factory):
    b = broker_factory("--auto-create-topics-enable", "true", "--num-partitions", "3")
    topic = "auto-created"
    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all")
    kc.produce(p, topic, b"hello", d, key=b"k")
    kc.flush(p)
    d.assert_no_errors()
    assert len(d.acked) == 1
    kc.wait_for_topic(b.bootstrap, topic, 3)
    a = d.acked[0]
    recs = kc.consume_range(b.bootstrap, topic, {a.partition: (a.offset, a.offset + 1)})
    assert [r.value for r in recs[a.partition]] == [b"hello"]

    # kafka-python producing to another unknown topic also auto-creates it.
    kp = kc.kp_producer(b.bootstrap, acks="all")
    meta = kp.send("auto-created-kp", value=b"hi", partition=0).get(timeout=60)
    kp.close(timeout=30)
    assert meta.offset == 0
    kc.wait_for_topic(b.bootstrap, "auto-created-kp", 3)


def test_auto_create_disabled(broker_factory):
    b = broker_factory("--auto-create-topics-enable", "false")
    topic = "not-auto-created"
    with kwire.Conn(b.port) as conn:
        md = kwire.metadata_v4(conn, [topic], allow_auto_topic_creation=True)
    assert md[topic][0] == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION, md

    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all", **{"topic.metadata.propagation.max.ms": 1000,
                                                 "message.timeout.ms": 15_000})
    kc.produce(p, topic, b"nope", d)
    kc.flush(p, timeout=60)
    assert not d.acked
    assert len(d.errors) == 1
    code = d.errors[0][0].code()
    assert code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), str(d.errors[0][0])

    with kwire.Conn(b.port) as conn:
        md = kwire.metadata_v4(conn, [topic], allow_auto_topic_creation=True)
    assert md[topic][0] == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION, md
    assert topic not in kc.all_topics(b.bootstrap)
    # Explicit creation still works.
    kc.create_topic(b.bootstrap, topic, 1)
