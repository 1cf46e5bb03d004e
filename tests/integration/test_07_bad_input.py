"""Garbage on the wire must not take the broker down, and the API table README promises is
exactly what the broker advertises and accepts: every advertised (API, version range) as the
README's "Supported Kafka APIs" table says, a request for any other API key or version closes
the connection with a log line, and ApiVersions at an unsupported version answers
UNSUPPORTED_VERSION with the table."""

import os
import random
import re
import struct

import kclients as kc
import kwire
from harness import REPO_ROOT

# Kafka's API keys by the names README uses (org.apache.kafka.common.protocol.ApiKeys).
KAFKA_API_KEYS = {
    "Produce": 0, "Fetch": 1, "ListOffsets": 2, "Metadata": 3, "LeaderAndIsr": 4,
    "StopReplica": 5, "UpdateMetadata": 6, "ControlledShutdown": 7, "OffsetCommit": 8,
    "OffsetFetch": 9, "FindCoordinator": 10, "JoinGroup": 11, "Heartbeat": 12, "LeaveGroup": 13,
    "SyncGroup": 14, "DescribeGroups": 15, "ListGroups": 16, "SaslHandshake": 17,
    "ApiVersions": 18, "CreateTopics": 19, "DeleteTopics": 20, "DeleteRecords": 21,
    "InitProducerId": 22, "OffsetForLeaderEpoch": 23, "AddPartitionsToTxn": 24,
    "AddOffsetsToTxn": 25, "EndTxn": 26, "WriteTxnMarkers": 27, "TxnOffsetCommit": 28,
    "DescribeAcls": 29, "CreateAcls": 30, "DeleteAcls": 31, "DescribeConfigs": 32,
    "AlterConfigs": 33, "AlterReplicaLogDirs": 34, "DescribeLogDirs": 35,
    "SaslAuthenticate": 36, "CreatePartitions": 37, "CreateDelegationToken": 38,
    "RenewDelegationToken": 39, "ExpireDelegationToken": 40, "DescribeDelegationToken": 41,
    "DeleteGroups": 42, "ElectLeaders": 43, "IncrementalAlterConfigs": 44,
    "AlterPartitionReassignments": 45, "ListPartitionReassignments": 46, "OffsetDelete": 47,
    "DescribeClientQuotas": 48, "AlterClientQuotas": 49, "DescribeUserScramCredentials": 50,
    "AlterUserScramCredentials": 51, "Vote": 52, "BeginQuorumEpoch": 53, "EndQuorumEpoch": 54,
    "DescribeQuorum": 55, "AlterPartition": 56, "UpdateFeatures": 57, "Envelope": 58,
    "FetchSnapshot": 59, "DescribeCluster": 60, "DescribeProducers": 61,
    "BrokerRegistration": 62, "BrokerHeartbeat": 63, "UnregisterBroker": 64,
    "DescribeTransactions": 65, "ListTransactions": 66, "AllocateProducerIds": 67,
    "ConsumerGroupHeartbeat": 68, "ConsumerGroupDescribe": 69, "ControllerRegistration": 70,
    "GetTelemetrySubscriptions": 71, "PushTelemetry": 72, "AssignReplicasToDirs": 73,
    "ListConfigResources": 74, "DescribeTopicPartitions": 75, "ShareGroupHeartbeat": 76,
    "ShareGroupDescribe": 77, "ShareFetch": 78, "ShareAcknowledge": 79, "AddRaftVoter": 80,
    "RemoveRaftVoter": 81, "UpdateRaftVoter": 82, "InitializeShareGroupState": 83,
    "ReadShareGroupState": 84, "WriteShareGroupState": 85, "DeleteShareGroupState": 86,
    "ReadShareGroupStateSummary": 87, "StreamsGroupHeartbeat": 88, "StreamsGroupDescribe": 89,
    "DescribeShareGroupOffsets": 90, "AlterShareGroupOffsets": 91, "DeleteShareGroupOffsets": 92,
}


def readme_api_table():
    """{api_key: (min, max)} from README's "Supported Kafka APIs" table."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Supported Kafka APIs", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        m = re.fullmatch(r"\|\s*(\w+)\s*\|\s*(\d+)(?:\s*[–-]\s*(\d+))?\b.*\|", line.strip())
        if not m:
            continue
        name, lo, hi = m.group(1), int(m.group(2)), int(m.group(3) or m.group(2))
        assert name in KAFKA_API_KEYS, f"README names an API Kafka does not have: {name!r}"
        key = KAFKA_API_KEYS[name]
        assert key not in table, f"README lists {name} twice"
        assert lo <= hi, line
        table[key] = (lo, hi)
    assert len(table) >= 10, f"could not parse README's API table: {table}"
    return table


def api_versions_v3(conn):
    """ApiVersions v3 (flexible request; the response header is v0 for ApiVersions)."""
    body = kwire.compact_string("tern-it") + kwire.compact_string("1.0") + kwire.uvarint(0)
    r = conn.call(kwire.API_API_VERSIONS, 3, body, header_version=2)
    err = r.i16()
    apis = {}
    for _ in range(r.uvarint() - 1):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        r.uvarint()  # tagged fields
        apis[k] = (lo, hi)
    return err, apis


def _assert_alive(broker, what):
    assert broker.running(), f"broker died after {what}; exit codes {broker.exit_codes}"
    with kwire.Conn(broker.port) as conn:
        err, apis = kwire.api_versions_v0(conn)
    assert err == 0, f"ApiVersions after {what}: error {err}"
    return apis


def _send_and_drain(broker, data, close_write=False):
    """Sends `data`; True if the broker then closed the connection, False if it stayed silent."""
    with kwire.Conn(broker.port) as conn:
        try:
            conn.send_raw(data)
            if close_write:
                conn.sock.shutdown(1)
        except OSError:
            pass  # broker may already have dropped us
        return conn.wait_closed_or_silent(timeout=3.0)


def _request_closes(broker, api_key, version, body=b""):
    with kwire.Conn(broker.port) as conn:
        try:
            conn.send_request(api_key, version, body)
        except OSError:
            return True
        return conn.wait_closed_or_silent(timeout=3.0)


def test_api_versions_advertises_exactly_the_readme_table(broker):
    want = readme_api_table()
    assert _assert_alive(broker, "nothing") == want
    with kwire.Conn(broker.port) as conn:
        err, apis = api_versions_v3(conn)
    assert err == 0
    assert apis == want


def test_unadvertised_api_keys_and_versions_close_the_connection(broker):
    table = readme_api_table()
    cases = [(k, 0) for k in sorted(set(KAFKA_API_KEYS.values()) - set(table))]
    cases += [(9999, 0), (-7, 3), (32767, 0)]
    for k, (lo, hi) in sorted(table.items()):
        if k == kwire.API_API_VERSIONS:
            continue  # answered with UNSUPPORTED_VERSION instead (below)
        cases.append((k, hi + 1))
        if lo > 0:
            cases.append((k, lo - 1))
    stayed_open = [(k, v) for k, v in cases if not _request_closes(broker, k, v, b"\x00" * 8)]
    assert not stayed_open, f"(api key, version) requests that did not close: {stayed_open}"
    log = broker.stderr_text()
    unlogged = [(k, v) for k, v in cases
                if f"unsupported request: api key {k} version {v} " not in log
                and f"unknown api key {k} " not in log]
    assert not unlogged, f"closed without a log line: {unlogged}"
    _assert_alive(broker, "unsupported requests")


def test_api_versions_unsupported_version_gets_v0_error_35_and_the_table(broker):
    want = readme_api_table()
    lo, hi = want[kwire.API_API_VERSIONS]
    with kwire.Conn(broker.port) as conn:
        for version in (hi + 1, 99):
            # A flexible version: header v2, compact-string body; the answer is v0-shaped.
            body = (kwire.compact_string("tern-it") + kwire.compact_string("1.0")
                    + kwire.uvarint(0))
            r = conn.call(kwire.API_API_VERSIONS, version, body, header_version=2)
            err = r.i16()
            assert err == kwire.ERR_UNSUPPORTED_VERSION, f"v{version}: error_code {err}"
            apis = r.array(lambda r: (r.i16(), r.i16(), r.i16()))
            assert {k: (a, b) for k, a, b in apis} == want, f"v{version}"
        # The connection stays usable: the client retries with a version it can speak.
        err, apis = kwire.api_versions_v0(conn)
        assert (err, apis) == (0, want)
    _assert_alive(broker, "ApiVersions v99")


def _expect_for_stream(data, max_request_bytes=104857600):
    """What the broker must do with a raw byte stream: close (a bad size prefix, or a whole
    frame with a bad header) or stay silent (waiting for the rest of a frame)."""
    (size,) = struct.unpack_from(">i", data)
    if size < 0 or size > max_request_bytes or size <= len(data) - 4:
        return True
    return False


def test_garbage_frames_do_not_kill_broker(broker):
    rng = random.Random(1234)
    random_body = bytes(rng.getrandbits(8) for _ in range(100))
    streams = [bytes(rng.getrandbits(8) for _ in range(257)),
               bytes(rng.getrandbits(8) for _ in range(4096)),
               b"\x00\x00\x10\x00" + os.urandom(64)]  # a 4 KiB frame of which 64 bytes came
    # (case, bytes, closes): closes is True when the broker must close the connection, False
    # when it must wait silently for the rest of a frame.
    cases = [(f"random byte stream {i}", d, _expect_for_stream(d)) for i, d in enumerate(streams)]
    assert {c for _, _, c in cases} == {True, False}, "the streams should test both outcomes"
    cases += [
        ("oversized size prefix", struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 64, True),
        ("socket.request.max.bytes+1 prefix", struct.pack(">i", 104857601) + b"\x00" * 64, True),
        ("negative size prefix", struct.pack(">i", -5) + b"\x00" * 16, True),
        ("zero size frame", struct.pack(">i", 0), True),
        ("truncated header", struct.pack(">i", 3) + b"\x00\x12\x00", True),
        ("valid size, random body", struct.pack(">i", 100) + random_body, True),
        ("frame then half-close", struct.pack(">i", 1000) + b"\x00" * 10, True),
    ]
    for what, data, closes in cases:
        got = _send_and_drain(broker, data, close_write=what.endswith("half-close"))
        assert got == closes, (f"{what}: the broker {'closed' if got else 'kept'} the "
                               f"connection (expected {'close' if closes else 'silence'})")
        _assert_alive(broker, what)
    for what, key, version, body in [
            ("unknown api key", 9999, 0, b""),
            ("negative api key", -7, 3, b"\x01\x02\x03"),
            ("known api, absurd version", kwire.API_METADATA, 32000, b"\xff" * 20),
            ("truncated produce body", kwire.API_PRODUCE, 3,
             b"\xff\xff\x00\x01\x00\x00\x75\x30\x00\x00\x00\x05")]:
        assert _request_closes(broker, key, version, body), f"{what}: connection not closed"
        _assert_alive(broker, what)

    # Many connections opened and dropped mid-frame.
    for _ in range(50):
        with kwire.Conn(broker.port) as conn:
            conn.send_raw(struct.pack(">i", 50) + b"\x00\x03")
    _assert_alive(broker, "50 abandoned connections")

    # A normal client still works end to end.
    topic = "after-garbage"
    kc.create_topic(broker.bootstrap, topic, 2)
    d = kc.Deliveries()
    p = kc.producer(broker.bootstrap, acks="all")
    for i in range(100):
        kc.produce(p, topic, f"ok-{i}".encode(), d, partition=i % 2)
    kc.flush(p)
    d.assert_no_errors()
    recs, marks = kc.consume_all(broker.bootstrap, topic, [0, 1])
    assert sum(len(r) for r in recs.values()) == 100
    assert broker.running()


def test_clients_resetting_pipelined_requests_do_not_hold_up_shutdown(broker):
    """Clients that pipeline requests and reset the connection before reading the responses
    leave nothing counted as in flight: a later clean shutdown has nothing to wait for."""
    import socket

    for k in range(20):
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
        reqs = b""
        for i in range(10):
            # Metadata v1 (header v1, null client id), all topics.
            body = struct.pack(">hhih", kwire.API_METADATA, 1, k * 100 + i, -1) + struct.pack(">i", -1)
            reqs += struct.pack(">i", len(body)) + body
        s.sendall(reqs)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST: the broker's writes to this connection fail
    _assert_alive(broker, "reset connections")
    broker.stop()
    log = broker.stderr_text()
    assert "still in flight at shutdown" not in log, broker.stderr_tail()
