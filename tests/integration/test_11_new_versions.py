"""The API versions current clients ask for, driven through kio (a codec other than the
broker's): Metadata v13 by topic id, Produce v10-v13, Fetch v13-v18 by topic id,
ListOffsets v10 sentinels, DescribeTopicPartitions paging, leader-epoch fencing against an
epoch persisted in cluster.json, and kafka-python's broker-version inference.
"""

import datetime
import importlib
import io
import json
import shutil
import socket
import struct
import uuid

import kio.serial as kio_serial
import pytest
from kio.schema.describe_topic_partitions.v0 import request as dtp_req
from kio.schema.describe_topic_partitions.v0 import response as dtp_resp
from kio.schema.list_offsets.v10 import request as lo_req
from kio.schema.list_offsets.v10 import response as lo_resp
from kio.schema.metadata.v13 import request as md_req
from kio.schema.metadata.v13 import response as md_resp
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i8, i16, i32, i32Timedelta, i64

import kwire

UNKNOWN_TOPIC_ID = 100
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
TOPIC_ALL_OPERATIONS = 3576  # READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS


def schema(api, version, kind):
    return importlib.import_module(f"kio.schema.{api}.v{version}.{kind}")


class KioConn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.correlation = 0

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise kwire.ConnectionClosed()
            buf += chunk
        return buf

    def call(self, req, resp_type):
        self.correlation += 1
        header_type = req.__header_schema__
        header = header_type(
            request_api_key=req.__api_key__,
            request_api_version=req.__version__,
            correlation_id=i32(self.correlation),
            client_id="tern-it",
        )
        out = io.BytesIO()
        kio_serial.entity_writer(header_type)(out, header)
        kio_serial.entity_writer(type(req))(out, req)
        payload = out.getvalue()
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        data = self._recv_exact(size)
        hdr, used = kio_serial.entity_reader(resp_type.__header_schema__)(data, 0)
        assert hdr.correlation_id == self.correlation
        resp, n = kio_serial.entity_reader(resp_type)(data, used)
        assert used + n == len(data), f"{resp_type.__name__}: {len(data) - used - n} bytes left"
        return resp


@pytest.fixture
def conn(broker):
    c = KioConn(broker.port)
    yield c
    c.close()


def metadata(conn, topics=None, ids=None, ops=False):
    req_topics = None
    if topics is not None or ids is not None:
        req_topics = tuple(md_req.MetadataRequestTopic(topic_id=None, name=TopicName(t)) for t in topics or ()) + \
            tuple(md_req.MetadataRequestTopic(topic_id=i, name=None) for i in ids or ())
    return conn.call(md_req.MetadataRequest(
        topics=req_topics, allow_auto_topic_creation=False,
        include_topic_authorized_operations=ops), md_resp.MetadataResponse)


def create_topic(port, name, partitions):
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def topic_id(conn, name):
    (t,) = metadata(conn, [name]).topics
    assert t.error_code == 0, t
    assert t.topic_id not in (None, uuid.UUID(int=0))
    return t.topic_id


def produce(conn, version, topic, partition, values, by_id=None):
    m = schema("produce", version, "request")
    r = schema("produce", version, "response")
    batch = kwire.record_batch([(None, v) for v in values])
    ident = {"topic_id": by_id} if version >= 13 else {"name": TopicName(topic)}
    req = m.ProduceRequest(
        transactional_id=None, acks=i16(-1), timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
        topic_data=(m.TopicProduceData(partition_data=(
            m.PartitionProduceData(index=i32(partition), records=batch),), **ident),))
    return conn.call(req, r.ProduceResponse)


def fetch(conn, version, tid, partition, offset, current_leader_epoch=-1, session_epoch=-1):
    m = schema("fetch", version, "request")
    r = schema("fetch", version, "response")
    req = m.FetchRequest(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=100)), min_bytes=i32(1),
        session_epoch=i32(session_epoch), forgotten_topics_data=(),
        topics=(m.FetchTopic(topic_id=tid, partitions=(m.FetchPartition(
            partition=i32(partition), fetch_offset=i64(offset),
            current_leader_epoch=i32(current_leader_epoch),
            partition_max_bytes=i32(1 << 20)),)),))
    return conn.call(req, r.FetchResponse)


def list_offsets(conn, topic, timestamp, current_leader_epoch=-1):
    req = lo_req.ListOffsetsRequest(
        replica_id=BrokerId(-1), isolation_level=i8(0),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
        topics=(lo_req.ListOffsetsTopic(name=TopicName(topic), partitions=(
            lo_req.ListOffsetsPartition(partition_index=i32(0), timestamp=i64(timestamp),
                                        current_leader_epoch=i32(current_leader_epoch)),)),))
    (t,) = conn.call(req, lo_resp.ListOffsetsResponse).topics
    (p,) = t.partitions
    return p


def test_kafka_python_infers_the_newest_broker_it_knows(broker):
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # Produce v13 (KIP-516 topic ids in Produce) is what kafka-python 3.0 maps to Kafka 4.1;
        # 4.2/4.3 need ListOffsets v11 / DescribeLogDirs v5, which kafka-protocol 0.18 lacks.
        assert admin._manager.broker_version == (4, 1)
    finally:
        admin.close()


def test_metadata_v13_by_topic_id_with_operations(broker, conn):
    create_topic(broker.port, "ids", 2)
    tid = topic_id(conn, "ids")
    r = metadata(conn, ids=[tid, uuid.UUID(int=12345)], ops=True)
    assert r.error_code == 0
    known, unknown = r.topics
    assert (known.name, known.topic_id, known.error_code) == ("ids", tid, 0)
    assert [(p.partition_index, p.leader_epoch) for p in known.partitions] == [(0, 0), (1, 0)]
    assert known.topic_authorized_operations == TOPIC_ALL_OPERATIONS
    assert (unknown.name, unknown.topic_id, unknown.error_code) == (None, uuid.UUID(int=12345), UNKNOWN_TOPIC_ID)
    # Not asked for: Kafka's "not requested" sentinel.
    assert metadata(conn, ["ids"]).topics[0].topic_authorized_operations == -2**31


def test_produce_v10_to_v13_and_fetch_v13_to_v18_by_topic_id(broker, conn):
    create_topic(broker.port, "newer", 1)
    tid = topic_id(conn, "newer")
    expected = []
    for version in (10, 11, 12, 13):
        value = f"v{version}".encode()
        r = produce(conn, version, "newer", 0, [value], by_id=tid)
        (t,) = r.responses
        (p,) = t.partition_responses
        assert p.error_code == 0, (version, p)
        assert p.base_offset == len(expected)
        if version >= 13:
            assert t.topic_id == tid
        else:
            assert t.name == "newer"
        expected.append(value)
    # Produce v13 to an unknown topic id.
    r = produce(conn, 13, None, 0, [b"x"], by_id=uuid.UUID(int=7))
    assert r.responses[0].topic_id == uuid.UUID(int=7)
    assert r.responses[0].partition_responses[0].error_code == UNKNOWN_TOPIC_ID

    for version in range(13, 19):
        r = fetch(conn, version, tid, 0, 0)
        assert r.error_code == 0 and r.session_id == 0
        (t,) = r.responses
        assert t.topic_id == tid
        (p,) = t.partitions
        assert (p.error_code, p.high_watermark, p.log_start_offset) == (0, 4, 0), version
        # The four batches, one per Produce version, whole.
        batches = kwire.parse_log_batches(bytes(p.records))
        assert [base for _, base, _ in batches] == [0, 1, 2, 3], version
        for value in expected:
            assert value in bytes(p.records)
        assert p.current_leader.leader_id == -1, "no leader hint without an error"
        r = fetch(conn, version, uuid.UUID(int=99), 0, 0)
        assert r.responses[0].topic_id == uuid.UUID(int=99)
        assert r.responses[0].partitions[0].error_code == UNKNOWN_TOPIC_ID
        # A leader epoch newer than the broker's.
        r = fetch(conn, version, tid, 0, 0, current_leader_epoch=1)
        assert r.responses[0].partitions[0].error_code == UNKNOWN_LEADER_EPOCH
        # An incremental fetch of a session this broker never handed out.
        r = fetch(conn, version, tid, 0, 0, session_epoch=1)
        assert r.error_code == 70 and r.responses == ()


def test_list_offsets_v10_sentinels(broker, conn):
    create_topic(broker.port, "sentinels", 1)
    for i in range(3):
        assert produce(conn, 12, "sentinels", 0, [b"a", b"b"]).responses[0].partition_responses[0].error_code == 0
    latest = list_offsets(conn, "sentinels", -1)
    assert (latest.error_code, latest.offset, latest.leader_epoch) == (0, 6, 0)
    for ts in (-2, -4):  # earliest, earliest local (no tiered storage: the same)
        p = list_offsets(conn, "sentinels", ts)
        assert (p.error_code, p.offset, p.leader_epoch) == (0, 0, 0), ts
    tiered = list_offsets(conn, "sentinels", -5)  # latest tiered: none without tiered storage
    assert (tiered.error_code, tiered.offset, tiered.leader_epoch) == (0, -1, -1)
    assert list_offsets(conn, "sentinels", -3).error_code == 0
    future = list_offsets(conn, "sentinels", 2**62)
    assert (future.error_code, future.offset, future.leader_epoch) == (0, -1, -1)
    assert list_offsets(conn, "sentinels", -1, current_leader_epoch=3).error_code == UNKNOWN_LEADER_EPOCH


def test_describe_topic_partitions_pages_with_the_cursor(broker, conn):
    create_topic(broker.port, "dtp-a", 3)
    create_topic(broker.port, "dtp-b", 2)
    seen, cursor, pages = [], None, 0
    while True:
        r = conn.call(dtp_req.DescribeTopicPartitionsRequest(
            topics=(dtp_req.TopicRequest(name=TopicName("dtp-b")), dtp_req.TopicRequest(name=TopicName("dtp-a")),
                    dtp_req.TopicRequest(name=TopicName("dtp-missing"))),
            response_partition_limit=i32(2), cursor=cursor), dtp_resp.DescribeTopicPartitionsResponse)
        pages += 1
        for t in r.topics:
            assert t.error_code == 0 or t.name == "dtp-missing"
            if t.error_code == 0:
                assert t.topic_id == topic_id(conn, t.name)
                assert t.topic_authorized_operations == TOPIC_ALL_OPERATIONS
            seen += [(t.name, p.partition_index, p.leader_epoch) for p in t.partitions]
        assert sum(len(t.partitions) for t in r.topics) <= 2
        if r.next_cursor is None:
            break
        cursor = dtp_req.Cursor(topic_name=r.next_cursor.topic_name, partition_index=r.next_cursor.partition_index)
        assert pages < 10
    assert seen == [("dtp-a", 0, 0), ("dtp-a", 1, 0), ("dtp-a", 2, 0), ("dtp-b", 0, 0), ("dtp-b", 1, 0)]
    assert pages == 3


def test_describe_topic_partitions_broker_cap(broker_factory, tmp_path):
    props = tmp_path / "server.properties"
    props.write_text("max.request.partition.size.limit=1\n")
    broker = broker_factory(config=props)
    create_topic(broker.port, "capped", 3)
    c = KioConn(broker.port)
    try:
        r = c.call(dtp_req.DescribeTopicPartitionsRequest(
            topics=(dtp_req.TopicRequest(name=TopicName("capped")),),
            response_partition_limit=i32(100), cursor=None), dtp_resp.DescribeTopicPartitionsResponse)
        assert [len(t.partitions) for t in r.topics] == [1]
        assert (r.next_cursor.topic_name, r.next_cursor.partition_index) == ("capped", 1)
    finally:
        c.close()


def _as_legacy_data_dir(broker, tid, leader_epochs):
    """Turns the stopped broker's data dir into one from before the metadata log: no
    __cluster_metadata-0 and no meta.properties, the topics in __tern_meta/cluster.json."""
    shutil.rmtree(broker.log_dir / "__cluster_metadata-0")
    (broker.log_dir / "meta.properties").unlink()
    topic = {"id": str(tid), "partitions": 1, "configs": {}}
    if leader_epochs is not None:
        topic["leader_epochs"] = leader_epochs
    meta = {"cluster_id": "legacy-cluster-id-0001", "version": 3, "topics": {"epochs": topic},
            "producer_id_block_end": 1000, "broker_configs": {}}
    (broker.log_dir / "__tern_meta").mkdir(exist_ok=True)
    (broker.log_dir / "__tern_meta" / "cluster.json").write_text(json.dumps(meta))


def _assert_epoch(c, tid, epoch, hwm):
    (t,) = metadata(c, ["epochs"]).topics
    assert t.partitions[0].leader_epoch == epoch
    assert list_offsets(c, "epochs", -1).leader_epoch == epoch
    assert list_offsets(c, "epochs", -1, current_leader_epoch=epoch - 1).error_code == FENCED_LEADER_EPOCH
    assert list_offsets(c, "epochs", -1, current_leader_epoch=epoch).error_code == 0
    for version in (15, 16, 17, 18):
        r = fetch(c, version, tid, 0, 0, current_leader_epoch=epoch - 1)
        p = r.responses[0].partitions[0]
        assert p.error_code == FENCED_LEADER_EPOCH
        if version >= 16:
            # KIP-951: the current leader and its endpoint come with the error.
            assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (r.node_endpoints[0].node_id, epoch)
        else:
            assert p.current_leader.leader_id == -1
        ok = fetch(c, version, tid, 0, 0, current_leader_epoch=epoch).responses[0].partitions[0]
        assert ok.error_code == 0 and ok.high_watermark == hwm


def test_leader_epochs_of_an_upgraded_cluster_json_are_kept_reported_and_fenced(broker, conn):
    create_topic(broker.port, "epochs", 1)
    tid = topic_id(conn, "epochs")
    assert produce(conn, 12, "epochs", 0, [b"x"]).responses[0].partition_responses[0].error_code == 0
    conn.close()
    broker.stop()
    _as_legacy_data_dir(broker, tid, [2])
    broker.start()
    c = KioConn(broker.port)
    try:
        # The kept epoch 2, then one leader election when the upgraded node unfences.
        _assert_epoch(c, tid, 3, 1)
        assert [t.name for t in metadata(c, None).topics] == ["epochs"]
    finally:
        c.close()
    # A restart from the metadata log: a controlled shutdown and the restart's election move
    # the epoch on; what the old epoch fetched stays fenced.
    broker.stop()
    broker.start()
    c = KioConn(broker.port)
    try:
        (t,) = metadata(c, ["epochs"]).topics
        assert t.partitions[0].leader_epoch > 3
        _assert_epoch(c, tid, t.partitions[0].leader_epoch, 1)
    finally:
        c.close()
    # A cluster.json from before leader epochs were kept upgrades at epoch 0 (then 1 once led).
    broker.stop()
    _as_legacy_data_dir(broker, tid, None)
    broker.start()
    c = KioConn(broker.port)
    try:
        _assert_epoch(c, tid, 1, 1)
    finally:
        c.close()


def test_describe_configs_advertised_listeners_default_when_unset(broker_factory):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
    broker = broker_factory(default_args=False, start=False)
    broker.extra_args = ["--listeners", broker.listener, "--log-dirs", str(broker.log_dir), "--shards", "2"]
    broker.start()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # config_filter="all": kafka-python's default ("modified") drops DEFAULT_CONFIG entries.
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, 0)], config_filter="all")
        modified = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, 0)])
    finally:
        admin.close()
    assert configs["broker"]["0"]["listeners"]["config_source"] == "STATIC_BROKER_CONFIG"  # a flag
    entry = configs["broker"]["0"]["advertised.listeners"]
    assert entry["config_source"] == "DEFAULT_CONFIG"
    assert entry["value"] == f"PLAINTEXT://127.0.0.1:{broker.port}"
    assert entry["synonyms"] == []
    assert "advertised.listeners" not in modified["broker"]["0"]
