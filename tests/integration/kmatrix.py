"""Independent-codec plumbing for the API version matrix (test_10_version_matrix.py).

The codec is kio (Python dataclasses generated from Apache Kafka's own JSON message schemas),
not kafka-protocol, which encodes Tern's responses. This module owns:

- `build(cls, spec)`: instantiates a kio dataclass of any version from one plain description
  (a dict): fields the version lacks are dropped, fields the description lacks take the
  schema default (or a zero value), nested entities and arrays are built recursively, ints
  become timedeltas / error-code enums where the schema says so. So one description per API
  serves every version, including versions advertised in the future.
- `KioConn`: a raw socket that frames a request with the header version its schema names
  (v2 for flexible versions, v1 otherwise), reads the response and decodes header and body
  with kio at the same version, failing on trailing bytes, a close or silence.
- record batch helpers to check Fetch payloads.
"""

import dataclasses
import datetime
import enum
import io
import socket
import struct
import types
import typing
import uuid

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

import kwire

CLIENT_ID = "tern-matrix"


class WireError(AssertionError):
    pass


# ------------------------------------------------------------------ building
def _hints(cls):
    return typing.get_type_hints(cls)


def _optional_inner(tp):
    """X for `X | None` / Optional[X], else None."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _zero(tp):
    if _optional_inner(tp) is not None:
        return None
    origin = typing.get_origin(tp)
    if origin is tuple:
        return ()
    if dataclasses.is_dataclass(tp):
        return build(tp, {})
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp(0)
        if issubclass(tp, bool):
            return False
        if issubclass(tp, datetime.timedelta):
            return datetime.timedelta(0)
        if issubclass(tp, datetime.datetime):
            return datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
        if issubclass(tp, int):
            return 0
        if issubclass(tp, float):
            return 0.0
        if issubclass(tp, str):
            return ""
        if issubclass(tp, bytes):
            return b""
        if issubclass(tp, uuid.UUID):
            return uuid.UUID(int=0)
    raise TypeError(f"no zero value for {tp!r}")


def convert(tp, value):
    """`value` (plain Python) as the schema type `tp`."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else convert(inner, value)
    if value is None:
        raise TypeError(f"None given for non-nullable {tp!r}")
    if typing.get_origin(tp) is tuple:
        (item,) = typing.get_args(tp)[:1]
        return tuple(convert(item, v) for v in value)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else build(tp, value)
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp(value)
        if issubclass(tp, datetime.timedelta) and isinstance(value, int):
            return datetime.timedelta(milliseconds=value)
        if issubclass(tp, datetime.datetime) and isinstance(value, int):
            return datetime.datetime.fromtimestamp(value / 1000, datetime.timezone.utc)
        if issubclass(tp, uuid.UUID) and not isinstance(value, uuid.UUID):
            return uuid.UUID(value)
    return value


def build(cls, spec):
    """An instance of the kio dataclass `cls` from the plain description `spec`."""
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.name in spec:
            kwargs[f.name] = convert(tp, spec[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _zero(tp)
    return cls(**kwargs)


def request(api_key, version, spec):
    return build(load_request_schema(api_key, version), spec)


# ----------------------------------------------------------------- connection
def _encode(entity):
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


class KioConn(kwire.Conn):
    """A raw connection (socket, correlation ids, context manager from kwire.Conn) that frames
    requests and reads responses through kio."""

    def _recv_exact(self, n, what):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout:
                raise WireError(f"{what}: no response within {self.sock.gettimeout()}s "
                                f"(connection silent, {len(buf)}/{n} bytes)") from None
            except ConnectionError as e:
                raise WireError(f"{what}: connection reset ({e})") from None
            if not chunk:
                raise WireError(f"{what}: connection closed by the broker "
                                f"after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def send(self, req):
        """Frames and sends `req` (a kio request entity); returns the correlation id."""
        self.corr += 1
        header_cls = type(req).__header_schema__
        header = build(header_cls, {
            "request_api_key": int(req.__api_key__),
            "request_api_version": int(req.__version__),
            "correlation_id": self.corr,
            "client_id": CLIENT_ID,
        })
        payload = _encode(header) + _encode(req)
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        return self.corr

    def call(self, req):
        """Sends `req` and returns the response decoded by kio at the request's version."""
        api_key, version = int(req.__api_key__), int(req.__version__)
        what = f"api {api_key} v{version}"
        corr = self.send(req)
        (size,) = struct.unpack(">i", self._recv_exact(4, what))
        frame = self._recv_exact(size, what)
        resp_cls = load_response_schema(api_key, version)
        try:
            header, pos = entity_reader(resp_cls.__header_schema__)(frame, 0)
            body, n = entity_reader(resp_cls)(frame, pos)
        except Exception as e:
            raise WireError(f"{what}: kio cannot decode the {size}-byte response: {e!r}; "
                            f"frame {frame[:64].hex()}...") from None
        if header.correlation_id != corr:
            raise WireError(f"{what}: correlation id {header.correlation_id}, sent {corr}")
        if pos + n != len(frame):
            raise WireError(f"{what}: {len(frame) - pos - n} trailing bytes after the response "
                            f"body (decoded {pos + n} of {len(frame)})")
        return body


# --------------------------------------------------------------- record data
def batches(records):
    """[(base_offset, record_count, max_timestamp), ...] of RecordBatch v2 bytes."""
    out = []
    pos = 0
    data = bytes(records or b"")
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        if pos + 12 + length > len(data):
            break  # a partial batch at the end (allowed by the protocol)
        magic = data[pos + 16]
        assert magic == 2, f"record batch magic {magic} at {pos}"
        max_ts = struct.unpack_from(">q", data, pos + 35)[0]
        count = struct.unpack_from(">i", data, pos + 57)[0]
        out.append((base, count, max_ts))
        pos += 12 + length
    return out
