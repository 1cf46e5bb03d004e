"""A response that cannot be encoded (a handler bug) must never leave the client hanging: the
request is answered with an error response of its API and version where the API has one, else
the connection is closed at once. The real binary is driven into the failure by its test-only
hook TERN_TEST_FAIL_ENCODE (API keys whose responses are treated as unencodable); requests and
responses go through kio, an independent codec.
"""

import pytest

from kmatrix import KioConn, WireError, request

HEARTBEAT, LIST_OFFSETS, DESCRIBE_LOG_DIRS, API_VERSIONS, CREATE_TOPICS = 12, 2, 35, 18, 19
UNKNOWN_SERVER_ERROR = -1
# Bounds the wait for the close; the old behaviour was silence for ever.
WAIT_S = 20.0


@pytest.fixture
def failing_broker(broker_factory):
    return broker_factory(env={"TERN_TEST_FAIL_ENCODE": f"{HEARTBEAT},{LIST_OFFSETS},"
                                                        f"{DESCRIBE_LOG_DIRS}"})


def create_topic(conn, name, partitions):
    r = conn.call(request(CREATE_TOPICS, 7, {"topics": [{
        "name": name, "num_partitions": partitions, "replication_factor": 1,
        "assignments": [], "configs": []}], "timeout": 30_000}))
    assert r.topics[0].error_code == 0, r


def test_top_level_error_answer_and_the_connection_goes_on(failing_broker):
    with KioConn(failing_broker.port, timeout=WAIT_S) as c:
        for v in (0, 4):
            r = c.call(request(HEARTBEAT, v, {"group_id": "g", "generation_id": 1,
                                              "member_id": "m"}))
            assert r.error_code == UNKNOWN_SERVER_ERROR, r
        # The same connection keeps serving.
        r = c.call(request(API_VERSIONS, 3, {"client_software_name": "t",
                                             "client_software_version": "1"}))
        assert r.error_code == 0 and r.api_keys
    assert "encoding response to api 12 v4 failed" in failing_broker.stderr_text()
    assert "answered UNKNOWN_SERVER_ERROR" in failing_broker.stderr_text()


def test_per_partition_errors_mirror_the_request(failing_broker):
    with KioConn(failing_broker.port, timeout=WAIT_S) as c:
        create_topic(c, "enc", 3)
        for v in (1, 7):
            r = c.call(request(LIST_OFFSETS, v, {
                "replica_id": -1, "isolation_level": 0, "timeout": 1000, "topics": [{
                    "name": "enc", "partitions": [
                        {"partition_index": p, "timestamp": -1, "max_num_offsets": 1}
                        for p in (0, 2)]}]}))
            (t,) = r.topics
            assert t.name == "enc"
            assert [(p.partition_index, p.error_code) for p in t.partitions] == [
                (0, UNKNOWN_SERVER_ERROR), (2, UNKNOWN_SERVER_ERROR)], r


def test_no_error_at_that_version_closes_the_connection_at_once(failing_broker):
    c = KioConn(failing_broker.port, timeout=WAIT_S)
    try:
        with pytest.raises(WireError, match="closed by the broker"):
            c.call(request(DESCRIBE_LOG_DIRS, 1, {"topics": None}))
    finally:
        c.close()
    log = failing_broker.stderr_text()
    assert "encoding response to api 35 v1 failed" in log
    assert "no error answer at this version; closing connection" in log
    # v3+ has a top-level error code: answered, not closed.
    with KioConn(failing_broker.port, timeout=WAIT_S) as c:
        r = c.call(request(DESCRIBE_LOG_DIRS, 4, {"topics": None}))
        assert r.error_code == UNKNOWN_SERVER_ERROR
