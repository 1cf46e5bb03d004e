"""Minimal hand-written Kafka wire protocol client for raw-protocol tests.

Only what the tests need: request framing (header v1/v2), ApiVersions v0,
Metadata v4, InitProducerId v0 and v4, Produce v3, and RecordBatch v2 building
(via kafka-python's DefaultRecordBatchBuilder, which handles varints/CRC32C).
"""

import socket
import struct

from kafka.record.default_records import DefaultRecordBatchBuilder

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19
API_DELETE_TOPICS = 20
API_INIT_PRODUCER_ID = 22
API_CREATE_PARTITIONS = 37

ERR_NONE = 0
ERR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERR_MESSAGE_TOO_LARGE = 10
ERR_UNSUPPORTED_VERSION = 35


class ConnectionClosed(Exception):
    pass


# ------------------------------------------------------------------ encoding
def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def compact_string(s):
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def nbytes(b):
    if b is None:
        return i32(-1)
    return i32(len(b)) + bytes(b)


def array(items, enc):
    if items is None:
        return i32(-1)
    return i32(len(items)) + b"".join(enc(x) for x in items)


class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def _take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"short response: need {size} bytes at {self.pos}, have {len(self.data)}")
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v

    def i8(self):
        return self._take(">b")

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def bool(self):
        return self._take(">b") != 0

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def uvarint(self):
        n = shift = 0
        while True:
            b = self._take(">B")
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def array(self, fn):
        n = self.i32()
        if n < 0:
            return None
        return [fn(self) for _ in range(n)]

    def remaining(self):
        return len(self.data) - self.pos


# ---------------------------------------------------------------- connection
class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=15.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.corr = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_request(self, api_key, version, body, header_version=1, client_id="tern-it"):
        self.corr += 1
        header = i16(api_key) + i16(version) + i32(self.corr) + string(client_id)
        if header_version >= 2:
            header += uvarint(0)  # empty tagged fields
        payload = header + body
        self.sock.sendall(i32(len(payload)) + payload)
        return self.corr

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionClosed(f"connection closed after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self):
        (size,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(size)

    def call(self, api_key, version, body, header_version=1):
        """Send a request and return a Reader positioned after the response header (v0)."""
        corr = self.send_request(api_key, version, body, header_version=header_version)
        r = Reader(self.recv_frame())
        got = r.i32()
        assert got == corr, f"correlation id mismatch: sent {corr}, got {got}"
        return r

    def wait_closed_or_silent(self, timeout=5.0):
        """True if the peer closed the connection within `timeout` (False on silence)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


# ----------------------------------------------------------------- requests
def api_versions_v0(conn):
    r = conn.call(API_API_VERSIONS, 0, b"")
    err = r.i16()
    apis = r.array(lambda r: (r.i16(), r.i16(), r.i16()))
    return err, {k: (lo, hi) for k, lo, hi in (apis or [])}


def metadata_v4(conn, topics, allow_auto_topic_creation):
    body = array(topics, string) + i8(1 if allow_auto_topic_creation else 0)
    r = conn.call(API_METADATA, 4, body)
    r.i32()  # throttle
    r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string()))  # brokers
    r.string()  # cluster id
    r.i32()  # controller id

    def partition(r):
        err, idx, leader = r.i16(), r.i32(), r.i32()
        r.array(lambda r: r.i32())
        r.array(lambda r: r.i32())
        return idx, err, leader

    def topic(r):
        err, name = r.i16(), r.string()
        r.bool()  # is_internal
        parts = r.array(partition)
        return name, err, parts

    return {name: (err, parts) for name, err, parts in r.array(topic)}


def init_producer_id_v0(conn, transaction_timeout_ms=60_000):
    r = conn.call(API_INIT_PRODUCER_ID, 0, string(None) + i32(transaction_timeout_ms))
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()  # error, producer id, epoch


def init_producer_id_v4(conn, producer_id=-1, producer_epoch=-1, transaction_timeout_ms=60_000):
    """InitProducerId v4 (flexible) without a transactional id, naming (producer_id, epoch)."""
    body = (uvarint(0)  # transactional id: null (compact nullable string)
            + i32(transaction_timeout_ms) + i64(producer_id) + i16(producer_epoch)
            + uvarint(0))  # tagged fields
    r = conn.call(API_INIT_PRODUCER_ID, 4, body, header_version=2)
    r.uvarint()  # response header tagged fields
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()  # error, producer id, epoch


def produce_v3(conn, topic, partition, records, acks=-1, timeout_ms=30_000):
    """Returns (error_code, base_offset) for the single partition."""
    body = (string(None) + i16(acks) + i32(timeout_ms)
            + array([topic], lambda t: string(t) + array(
                [partition], lambda p: i32(p) + nbytes(records))))
    r = conn.call(API_PRODUCE, 3, body)

    def part(r):
        return r.i32(), r.i16(), r.i64(), r.i64()

    topics = r.array(lambda r: (r.string(), r.array(part)))
    ((name, parts),) = topics
    assert name == topic, (name, topic)
    ((idx, err, base, _append_time),) = parts
    assert idx == partition
    return err, base


def record_batch(records, producer_id=-1, producer_epoch=-1, base_sequence=-1,
                 timestamp_ms=None):
    """RecordBatch v2 bytes for [(key, value), ...] (uncompressed)."""
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=producer_id,
        producer_epoch=producer_epoch, base_sequence=base_sequence, batch_size=1 << 24)
    for i, (k, v) in enumerate(records):
        b.append(i, timestamp=timestamp_ms, key=k, value=v, headers=[])
    return bytes(b.build())


# ------------------------------------------------------------- log parsing
def parse_log_batches(data):
    """[(file_position, base_offset, batch_length), ...] of a Kafka .log segment.

    Stops at the end of the data, at a zero/negative length (zero padding
    after the logical end) or at a batch that runs past the end of the file.
    """
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        if length <= 0 or pos + 12 + length > len(data):
            break
        out.append((pos, base, length))
        pos += 12 + length
    return out


# ------------------------------------------------ kafka-python's schema codec
def kp_call(conn, request, response_class, version):
    """Sends a kafka-python protocol message at `version` and decodes the response.

    kafka-python 3 generates its codec from Apache Kafka's JSON message schemas: an encoder
    independent of the one Tern uses, for APIs and versions the hand-written helpers above
    do not cover.
    """
    conn.corr += 1
    request.with_header(correlation_id=conn.corr, client_id="tern-it")
    conn.send_raw(request.encode(version=version, header=True, framed=True))
    resp = response_class.decode(conn.recv_frame(), version=version, header=True)
    assert resp.header.correlation_id == conn.corr, (resp.header, conn.corr)
    return resp
