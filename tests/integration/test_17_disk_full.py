"""Disk full: a single broker whose data dir is a small loop-mounted ext4 (64 MiB).

A producer fills it; the broker refuses Produce with KAFKA_STORAGE_ERROR (56), which
librdkafka retries; a consumer still reads every acknowledged record; the
metrics show the free bytes and the 0/1 "below the floor"; once space is freed (a ballast
file outside the log, or a deleted topic) writes resume without a restart, including a
message a retrying producer sent while the disk was full; a restart then reads everything.

Two ways to be full: below the configured floor (tern.log.dir.min.free.bytes, the normal
case), and with the floor at 0 so that segment writes really hit ENOSPC (the log cuts the
failed writes back and takes appends again).  Needs root for the loop mount; skipped
otherwise.  The file system (loopfs.py) is unmounted and its loop device detached in the
fixture's teardown, also on failure.  Every wait is a bounded poll, never a timing assertion."""

import os
import time
import urllib.request

import pytest
from confluent_kafka import KafkaError
from prometheus_client.parser import text_string_to_metric_families

import kclients as kc
import loopfs
from harness import free_port

FS_BYTES = 64 << 20
BALLAST_BYTES = 16 << 20
VALUE_BYTES = 16 << 10
# At most this many records are sent while filling (64 MiB / 16 KiB, twice over).
MAX_FILL_RECORDS = 2 * FS_BYTES // VALUE_BYTES
CHUNK = 64


@pytest.fixture
def small_fs(tmp_path):
    """A 64 MiB ext4 mounted on tmp_path/mnt, with a 16 MiB ballast file outside the log."""
    with loopfs.mounted(tmp_path, FS_BYTES) as mnt:
        loopfs.write_ballast(mnt / "ballast", BALLAST_BYTES)
        (mnt / "data").mkdir()
        yield mnt


def _scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _gauge(url, name):
    fam = _scrape(url).get(name)
    assert fam is not None and fam.samples, f"no {name} in the metrics"
    return fam.samples[0].value


def _wait_gauge(url, name, want, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        v = _gauge(url, name)
        if v == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is {v}, expected {want}")
        time.sleep(0.1)


def _start(broker_factory, tmp_path, mnt, floor_bytes):
    cfg = tmp_path / "disk.properties"
    cfg.write_text(f"tern.log.dir.min.free.bytes={floor_bytes}\n"
                   "tern.log.dir.free.space.check.interval.ms=100\n"
                   f"log.segment.bytes={4 << 20}\n")
    port = free_port()
    b = broker_factory("--metrics-listener", f"127.0.0.1:{port}", config=cfg,
                       log_dir=mnt / "data", shards=1)
    b.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return b


def _fill(bootstrap, topic):
    """Produces 16 KiB records (acks=all, no client retries) until the broker refuses one.
    Returns ({offset: value} acknowledged, the first delivery error)."""
    p = kc.producer(bootstrap, acks="all", retries=0, enable_idempotence=False,
                    message_timeout_ms=60000)
    d = kc.Deliveries()
    sent = 0
    while not d.errors and sent < MAX_FILL_RECORDS:
        for _ in range(CHUNK):
            value = f"{sent:08d}".encode() + os.urandom(VALUE_BYTES - 8)
            kc.produce(p, topic, value, d, partition=0)
            sent += 1
        kc.flush(p)
    assert d.errors, f"the disk never filled after {sent} records"
    return {r.offset: r.value for r in d.acked}, d.errors[0][0]


def _read_all(bootstrap, topic):
    recs, marks = kc.consume_all(bootstrap, topic, [0])
    kc.assert_contiguous(recs, marks)
    return {r.offset: r.value for r in recs[0]}


@pytest.mark.parametrize("mode", ["below_floor", "enospc"])
def test_full_disk_refuses_produce_keeps_data_and_recovers(small_fs, broker_factory, tmp_path,
                                                           mode):
    floor = 20 << 20 if mode == "below_floor" else 0
    b = _start(broker_factory, tmp_path, small_fs, floor)
    kc.create_topic(b.bootstrap, "fill", 1)
    assert _gauge(b.metrics_url, "tern_log_dir_free_bytes") > 0
    assert _gauge(b.metrics_url, "tern_log_dir_min_free_bytes") == floor
    assert _gauge(b.metrics_url, "tern_log_dir_below_min_free") == 0

    acked, err = _fill(b.bootstrap, "fill")
    assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    assert len(acked) > 100, f"only {len(acked)} records before the disk was full"
    if mode == "below_floor":
        _wait_gauge(b.metrics_url, "tern_log_dir_below_min_free", 1)
        assert _gauge(b.metrics_url, "tern_log_dir_free_bytes") < floor
    else:
        assert "cutting the log back" in b.stderr_text()

    # Reads go on: every acknowledged record is there, byte for byte.
    read = _read_all(b.bootstrap, "fill")
    missing = [o for o, v in acked.items() if read.get(o) != v]
    assert not missing, f"{len(missing)} acknowledged records lost, first {missing[:5]}"

    # A producer that retries (idempotent, the default retries) sends while the disk is full:
    # librdkafka retries KAFKA_STORAGE_ERROR (it is delivered once there is room again).
    waiting = kc.producer(b.bootstrap, acks="all", enable_idempotence=True,
                          message_timeout_ms=120000, retry_backoff_ms=100)
    dw = kc.Deliveries()
    kc.produce(waiting, "fill", b"sent-while-full", dw, partition=0)
    waiting.poll(0.5)

    # Free space outside the log: writes resume without a restart.
    os.remove(small_fs / "ballast")
    if mode == "below_floor":
        _wait_gauge(b.metrics_url, "tern_log_dir_below_min_free", 0)
    kc.flush(waiting, timeout=120)
    dw.assert_no_errors()
    assert [r.value for r in dw.acked] == [b"sent-while-full"]
    waiting_offset = dw.acked[0].offset

    p = kc.producer(b.bootstrap, acks="all", enable_idempotence=True)
    d = kc.Deliveries()
    for i in range(50):
        kc.produce(p, "fill", f"after-{i}".encode(), d, partition=0)
    kc.flush(p)
    d.assert_no_errors()
    for r in d.acked:
        acked[r.offset] = r.value
    acked[waiting_offset] = b"sent-while-full"

    def check():
        read = _read_all(b.bootstrap, "fill")
        missing = [o for o, v in acked.items() if read.get(o) != v]
        assert not missing, f"{len(missing)} acknowledged records lost, first {missing[:5]}"
        assert max(acked) == max(read), "records nobody acknowledged at the end of the log"

    check()
    # Nothing on disk was damaged: a restart reads the same.
    b.stop()
    b.start()
    check()


def test_deleting_a_topic_frees_space_and_writes_resume(small_fs, broker_factory, tmp_path):
    b = _start(broker_factory, tmp_path, small_fs, 20 << 20)
    kc.create_topic(b.bootstrap, "bulk", 1)
    kc.create_topic(b.bootstrap, "other", 1)
    acked, err = _fill(b.bootstrap, "bulk")
    assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    _wait_gauge(b.metrics_url, "tern_log_dir_below_min_free", 1)
    # Every topic on the disk is refused, not only the one that filled it.
    p = kc.producer(b.bootstrap, acks="all", retries=0, enable_idempotence=False)
    d = kc.Deliveries()
    kc.produce(p, "other", b"refused", d, partition=0)
    kc.flush(p)
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.KAFKA_STORAGE_ERROR]

    a = kc.admin(b.bootstrap)
    a.delete_topics(["bulk"])["bulk"].result(timeout=30)
    kc.wait_topic_absent(b.bootstrap, "bulk")
    _wait_gauge(b.metrics_url, "tern_log_dir_below_min_free", 0)
    p = kc.producer(b.bootstrap, acks="all", enable_idempotence=True)
    d = kc.Deliveries()
    for i in range(20):
        kc.produce(p, "other", f"v{i}".encode(), d, partition=0)
    kc.flush(p)
    d.assert_no_errors()
    assert [r.value for r in sorted(d.acked, key=lambda r: r.offset)] == [
        f"v{i}".encode() for i in range(20)]
