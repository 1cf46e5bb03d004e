"""Garbage on the wire must not take the broker down."""

import os
import random
import struct

import kclients as kc
import kwire

SUPPORTED_APIS = {
    kwire.API_PRODUCE, kwire.API_FETCH, kwire.API_LIST_OFFSETS, kwire.API_METADATA,
    kwire.API_API_VERSIONS, kwire.API_CREATE_TOPICS, kwire.API_DELETE_TOPICS,
    kwire.API_INIT_PRODUCER_ID, kwire.API_CREATE_PARTITIONS,
}


def _assert_alive(broker, what):
    assert broker.running(), f"broker died after {what}; exit codes {broker.exit_codes}"
    with kwire.Conn(broker.port) as conn:
        err, apis = kwire.api_versions_v0(conn)
    assert err == 0, f"ApiVersions after {what}: error {err}"
    return apis


def _send_and_drain(broker, data, close_write=False):
    with kwire.Conn(broker.port) as conn:
        try:
            conn.send_raw(data)
            if close_write:
                conn.sock.shutdown(1)
        except OSError:
            pass  # broker may already have dropped us
        conn.wait_closed_or_silent(timeout=3.0)


def test_api_versions_lists_supported_apis(broker):
    apis = _assert_alive(broker, "nothing")
    missing = SUPPORTED_APIS - set(apis)
    assert not missing, f"ApiVersions v0 does not list api keys {sorted(missing)}: {apis}"
    for k, (lo, hi) in apis.items():
        assert 0 <= lo <= hi, (k, lo, hi)


def test_api_versions_unsupported_version_gets_v0_error_35(broker):
    with kwire.Conn(broker.port) as conn:
        # v99 would be a flexible version: header v2, compact-string body.
        body = kwire.compact_string("tern-it") + kwire.compact_string("1.0") + kwire.uvarint(0)
        r = conn.call(kwire.API_API_VERSIONS, 99, body, header_version=2)
        err = r.i16()
        assert err == kwire.ERR_UNSUPPORTED_VERSION, f"error_code {err}, expected 35"
        apis = r.array(lambda r: (r.i16(), r.i16(), r.i16()))
        assert apis is not None and any(k == kwire.API_API_VERSIONS for k, _, _ in apis), apis
    _assert_alive(broker, "ApiVersions v99")


def test_garbage_frames_do_not_kill_broker(broker):
    rng = random.Random(1234)
    cases = [
        ("random bytes", bytes(rng.getrandbits(8) for _ in range(257))),
        ("random bytes (urandom)", os.urandom(4096)),
        ("oversized size prefix", struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 64),
        ("socket.request.max.bytes+1 prefix", struct.pack(">i", 104857601) + b"\x00" * 64),
        ("negative size prefix", struct.pack(">i", -5) + b"\x00" * 16),
        ("zero size frame", struct.pack(">i", 0)),
        ("truncated header", struct.pack(">i", 3) + b"\x00\x12\x00"),
        ("valid size, random body", struct.pack(">i", 100) + bytes(rng.getrandbits(8) for _ in range(100))),
        ("unknown api key", None),
        ("negative api key", None),
        ("known api, absurd version", None),
        ("truncated produce body", None),
        ("frame then half-close", struct.pack(">i", 1000) + b"\x00" * 10),
    ]
    for what, data in cases:
        if what == "unknown api key":
            with kwire.Conn(broker.port) as conn:
                conn.send_request(9999, 0, b"")
                conn.wait_closed_or_silent(timeout=3.0)
        elif what == "negative api key":
            with kwire.Conn(broker.port) as conn:
                conn.send_request(-7, 3, b"\x01\x02\x03")
                conn.wait_closed_or_silent(timeout=3.0)
        elif what == "known api, absurd version":
            with kwire.Conn(broker.port) as conn:
                conn.send_request(kwire.API_METADATA, 32000, b"\xff" * 20)
                conn.wait_closed_or_silent(timeout=3.0)
        elif what == "truncated produce body":
            with kwire.Conn(broker.port) as conn:
                conn.send_request(kwire.API_PRODUCE, 3, b"\xff\xff\x00\x01\x00\x00\x75\x30\x00\x00\x00\x05")
                conn.wait_closed_or_silent(timeout=3.0)
        else:
            _send_and_drain(broker, data, close_write=what.endswith("half-close"))
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
