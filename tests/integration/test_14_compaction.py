"""Log compaction (cleanup.policy=compact) with real clients: confluent-kafka and kafka-python
write many versions per key plus tombstones; after the cleaner ran, a consumer from the
beginning sees exactly the latest value per key with increasing offsets; tombstones go after
delete.retention.ms; compact,delete also honours retention; a kill -9 during a clean, then a
restart, reads as before or after the clean; DescribeLogDirs sizes shrink; a null key on a
compacted topic is refused with INVALID_RECORD.  Small segments keep it to seconds; every wait
is a bounded poll for a condition, never a timing assertion."""

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from confluent_kafka import KafkaError
from prometheus_client.parser import text_string_to_metric_families
from kafka.protocol.admin import DescribeLogDirsRequest, DescribeLogDirsResponse

import kclients as kc
import kwire
from harness import free_port

CLEANER_PROPS = "log.cleaner.backoff.ms=100\n"


def _broker(broker_factory, tmp_path, extra_props=""):
    cfg = tmp_path / f"cleaner-{time.monotonic_ns()}.properties"
    cfg.write_text(CLEANER_PROPS + extra_props)
    port = free_port()
    b = broker_factory("--log-retention-check-interval-ms", "200",
                       "--metrics-listener", f"127.0.0.1:{port}", config=cfg)
    b.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return b


def _metric(b, name):
    text = urllib.request.urlopen(b.metrics_url, timeout=10).read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name)


def _create(bootstrap, topic, **configs):
    a = kc.admin(bootstrap)
    fs = a.create_topics([kc.NewTopic(topic, num_partitions=1, replication_factor=1,
                                      config={k: str(v) for k, v in configs.items()})],
                         request_timeout=30)
    for f in fs.values():
        f.result(timeout=30)
    kc.wait_for_topic(bootstrap, topic, 1)


COMPACT = {
    "cleanup.policy": "compact",
    "segment.bytes": 4096,
    "min.cleanable.dirty.ratio": "0.01",
}


def _write_versions(bootstrap, topic, keys, versions, tombstones=(), ts=None):
    """confluent-kafka writes the even versions, kafka-python the odd ones (in order, each
    flushed before the other writes), then tombstones for `tombstones` (kafka-python).
    Returns the expected latest value per key (None = tombstone)."""
    latest = {}
    d = kc.Deliveries()
    cp = kc.producer(bootstrap, acks="all", linger_ms=2)
    kp = kc.kp_producer(bootstrap, acks="all", linger_ms=2)
    try:
        for v in range(versions):
            for k in range(keys):
                key, val = f"key-{k}".encode(), f"v{v}-{'c' if v % 2 == 0 else 'k'}".encode()
                if v % 2 == 0:
                    kc.produce(cp, topic, val, d, key=key, partition=0, timestamp=ts)
                else:
                    kp.send(topic, key=key, value=val, partition=0, timestamp_ms=ts)
                latest[key] = val
            if v % 2 == 0:
                kc.flush(cp)
            else:
                kp.flush(timeout=30)
        for k in tombstones:
            key = f"key-{k}".encode()
            kp.send(topic, key=key, value=None, partition=0, timestamp_ms=ts)
            latest[key] = None
        kp.flush(timeout=30)
    finally:
        kp.close(timeout=10)
    d.assert_no_errors()
    return latest


def _fill(bootstrap, topic, n=60, tag="fill", ts=None):
    """Unique-key records: enough bytes to roll the segments holding the real records."""
    d = kc.Deliveries()
    p = kc.producer(bootstrap, acks="all", linger_ms=0)
    for i in range(n):
        kc.produce(p, topic, b"f" * 100, d, key=f"{tag}-{time.monotonic_ns()}-{i}".encode(),
                   partition=0, timestamp=ts)
    kc.flush(p)
    d.assert_no_errors()


def _read(bootstrap, topic, client="confluent"):
    """Every record from the low watermark on (fillers left out), by one client."""
    marks = kc.watermarks(bootstrap, topic, 0)
    if client == "confluent":
        recs = kc.consume_range(bootstrap, topic, {0: marks})[0]
    else:
        recs = kc.kp_consume_range(bootstrap, topic, {0: marks})[0]
    offsets = [r.offset for r in recs]
    assert offsets == sorted(set(offsets)), "offsets increase"
    return [r for r in recs if not r.key.startswith(b"fill-")], marks


def _wait(pred, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = pred()
        if ok:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def _log_dir_size(port, topic):
    T = DescribeLogDirsRequest.DescribableLogDirTopic
    with kwire.Conn(port) as conn:
        resp = kwire.kp_call(conn, DescribeLogDirsRequest(topics=[T(topic=topic, partitions=[0])]),
                             DescribeLogDirsResponse, 1)
    ((t,),) = [r.topics for r in resp.results]
    return t.partitions[0].partition_size


def _exactly_latest(bootstrap, topic, latest, tombstones_present):
    """Both clients, from the beginning, see exactly one record per key: its latest value."""
    want = sorted((k, v or b"") for k, v in latest.items() if v is not None or tombstones_present)

    def check():
        got = {c: sorted((r.key, r.value or b"") for r in _read(bootstrap, topic, c)[0])
               for c in ("confluent", "kafka-python")}
        return all(g == want for g in got.values()), got
    return _wait(check, "exactly the latest value per key")


def test_latest_value_per_key_and_tombstones_expire(broker_factory, tmp_path):
    b = _broker(broker_factory, tmp_path)
    topic = "compacted"
    _create(b.bootstrap, topic, **COMPACT, **{"delete.retention.ms": 3000})
    latest = _write_versions(b.bootstrap, topic, keys=20, versions=10, tombstones=range(5))
    _fill(b.bootstrap, topic)
    size_before = _log_dir_size(b.port, topic)
    # First the cleaner keeps one record per key, tombstones included (they are fresh).
    _exactly_latest(b.bootstrap, topic, latest, tombstones_present=True)
    # The versions took ~8 KB, the latest values a few hundred bytes (fillers stay).
    assert _log_dir_size(b.port, topic) < size_before - 3000
    # After delete.retention.ms a later clean (new dirty data makes one due) drops them.
    def gone():
        _fill(b.bootstrap, topic, n=40)
        recs, _ = _read(b.bootstrap, topic)
        return not any(r.value is None for r in recs), len(recs)
    _wait(gone, "tombstones removed after delete.retention.ms")
    _exactly_latest(b.bootstrap, topic, latest, tombstones_present=False)
    # The cleaner's metrics moved.
    assert _metric(b, "tern_cleaner_passes_total") >= 2
    assert _metric(b, "tern_cleaner_read_bytes_total") > _metric(b, "tern_cleaner_written_bytes_total") > 0
    assert _metric(b, "tern_cleaner_removed_records_total") >= 20 * 9


def test_compact_delete_honours_retention(broker_factory, tmp_path):
    b = _broker(broker_factory, tmp_path)
    topic = "compact-delete"
    _create(b.bootstrap, topic, **{**COMPACT, "cleanup.policy": "compact,delete"},
            **{"retention.ms": 60_000})
    old = int(time.time() * 1000) - 3_600_000
    _write_versions(b.bootstrap, topic, keys=10, versions=4, ts=old)
    _fill(b.bootstrap, topic, ts=old)
    # Retention deletes the old segments (their newest record is an hour old; cleaning merges
    # them but keeps their timestamps): the low watermark moves past every real record.
    def retained():
        low, high = kc.watermarks(b.bootstrap, topic, 0)
        if low == 0:
            return False, (low, high, None)
        try:
            recs, _ = _read(b.bootstrap, topic)
        except AssertionError as e:
            # Retention may delete the segment between the watermarks and the fetch: the
            # consumer then gets OFFSET_OUT_OF_RANGE, which is retention working; look again.
            if "Offset out of range" not in str(e):
                raise
            return False, (low, high, "moved during the read")
        return not recs, (low, high, len(recs))
    _wait(retained, "retention on a compact,delete topic")


def test_null_key_is_refused_on_a_compacted_topic(broker_factory, tmp_path):
    b = _broker(broker_factory, tmp_path)
    topic = "compacted-nokey"
    _create(b.bootstrap, topic, **COMPACT)
    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all", linger_ms=0, retries=0)
    kc.produce(p, topic, b"no key", d, partition=0)
    kc.flush(p)
    kc.produce(p, topic, b"keyed", d, key=b"k", partition=0)
    kc.flush(p)
    # The whole batch is refused (as Kafka does); the keyed record in its own batch goes in.
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.INVALID_RECORD], d.errors
    low, high = kc.watermarks(b.bootstrap, topic, 0)
    assert high - low == 1


def test_kill_during_a_clean_then_restart(broker_factory, tmp_path):
    # A throttled cleaner (200 KB/s) makes a clean of this partition take seconds.
    b = _broker(broker_factory, tmp_path, "log.cleaner.io.max.bytes.per.second=200000\n")
    topic = "compacted-kill"
    _create(b.bootstrap, topic, **{**COMPACT, "segment.bytes": 65536})
    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all", linger_ms=5)
    latest = {}
    written = set()
    for v in range(20):
        for k in range(200):
            key, val = f"key-{k}".encode(), f"v{v}".encode() + b"x" * 200
            kc.produce(p, topic, val, d, key=key, partition=0)
            latest[key] = val
            written.add((key, val))
    kc.flush(p)
    d.assert_no_errors()
    _fill(b.bootstrap, topic, n=700)
    pdir = b.partition_dir(topic, 0)
    _wait(lambda: (any(pdir.glob("*.cleaned")) or any(pdir.glob("*.swap")), None),
          "a clean in progress", timeout=60)
    b.kill9()
    b.start()
    recs, _ = _read(b.bootstrap, topic)
    # As before or after (or part way): every record is one that was written, the latest
    # value of every key is there and comes last.
    assert all((r.key, r.value) in written for r in recs)
    seen = {}
    for r in recs:
        seen[r.key] = r.value
    assert seen == latest
    # The restarted cleaner finishes the job. Readers can see exactly the latest values while
    # its pass is still writing a later group of segments (throttled to 200 KB/s: seconds), so
    # the leftover files are waited for (bounded), not looked for at that instant.
    _exactly_latest(b.bootstrap, topic, latest, tombstones_present=True)
    _wait(lambda: (not any(pdir.glob("*.cleaned")) and not any(pdir.glob("*.swap")),
                   sorted(f.name for f in pdir.iterdir())),
          "the restarted clean to finish (no .cleaned or .swap left)", timeout=60)
    _exactly_latest(b.bootstrap, topic, latest, tombstones_present=True)


def test_null_key_record_errors_on_the_wire(broker_factory, tmp_path):
    """Produce v8 (KIP-467): the partition's error_message and one record_errors entry per
    record without a key, with its index in the batch."""
    b = _broker(broker_factory, tmp_path)
    topic = "compacted-kip467"
    _create(b.bootstrap, topic, **COMPACT)
    batch = kwire.record_batch([(b"a", b"1"), (None, b"2"), (b"c", b"3"), (None, b"4")])
    body = (kwire.string(None) + kwire.i16(-1) + kwire.i32(10_000)
            + kwire.array([topic], lambda t: kwire.string(t) + kwire.array(
                [0], lambda p: kwire.i32(p) + kwire.nbytes(batch))))
    with kwire.Conn(b.port) as conn:
        r = conn.call(kwire.API_PRODUCE, 8, body)

        def part(r):
            idx, err, base, _t, _lso = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
            rec_errs = r.array(lambda r: (r.i32(), r.string()))
            return idx, err, base, rec_errs, r.string()

        ((name, parts),) = r.array(lambda r: (r.string(), r.array(part)))
    ((idx, err, base, rec_errs, msg),) = parts
    assert (name, idx, err, base) == (topic, 0, 87, -1)
    assert [i for i, _ in rec_errs] == [1, 3]
    assert all("without key" in m for _, m in rec_errs), rec_errs
    assert "without key" in msg, msg
    low, high = kc.watermarks(b.bootstrap, topic, 0)
    assert high == low, "nothing of the refused batch was written"


QUIX_PYTHON = Path(__file__).resolve().parents[2] / ".venv-quix" / "bin" / "python"
QUIX_APP = Path(__file__).resolve().parents[1] / "clients" / "quix" / "count_app.py"


def _quix_run(bootstrap, group, state_dir, count):
    """Runs the Quix Streams counting app until it processed `count` records (bounded)."""
    cmd = [str(QUIX_PYTHON), str(QUIX_APP), "--broker", bootstrap, "--input", "quix-words",
           "--output", "quix-counts", "--group", group, "--state-dir", str(state_dir),
           "--count", str(count), "--timeout", "60"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"quix app exited {r.returncode}:\n{r.stderr[-3000:]}"
    return r.stderr


def _produce_words(bootstrap, keys, versions):
    d = kc.Deliveries()
    p = kc.producer(bootstrap, acks="all", linger_ms=0)
    for v in range(versions):
        for k in range(keys):
            kc.produce(p, "quix-words", json.dumps({"v": v}).encode(), d,
                       key=f"k{k}".encode(), partition=0)
    kc.flush(p)
    d.assert_no_errors()


def test_quix_streams_restores_state_from_a_compacted_changelog(broker_factory, tmp_path):
    """Quix Streams (its own confluent-kafka generation, in .venv-quix) keeps a per-key count in
    RocksDB backed by a changelog topic it creates with cleanup.policy=compact. The cleaner
    compacts the changelog; after a kill -9 of the broker and with the app's local state deleted,
    the app restores its state from the compacted changelog and counts on from there."""
    if not QUIX_PYTHON.exists():
        pytest.skip(".venv-quix is missing: ./scripts/test creates it")
    b = _broker(broker_factory, tmp_path,
                "log.segment.bytes=4096\nlog.cleaner.min.cleanable.ratio=0.01\n")
    for t in ("quix-words", "quix-counts"):
        _create(b.bootstrap, t)
    keys, versions = 10, 50
    _produce_words(b.bootstrap, keys, versions)
    state = tmp_path / "quix-state"
    _quix_run(b.bootstrap, "quix-g", state, keys * versions)
    changelog = "changelog__quix-g--quix-words--default"
    # The app committed every 10 records: ~500 changelog versions of 10 keys, which the cleaner
    # brings down towards one per key.
    def compacted():
        low, high = kc.watermarks(b.bootstrap, changelog, 0)
        recs = kc.consume_range(b.bootstrap, changelog, {0: (low, high)})[0]
        return high >= keys * versions // 2 and len(recs) < high // 4, (low, high, len(recs))
    _wait(compacted, "the cleaner compacting the Quix changelog")
    assert _metric(b, "tern_cleaner_passes_total") > 0
    b.kill9()
    b.start()
    shutil.rmtree(state)
    _produce_words(b.bootstrap, keys, 1)
    log = _quix_run(b.bootstrap, "quix-g", state, keys)
    assert "Recovery" in log, log[-2000:]
    low, high = kc.watermarks(b.bootstrap, "quix-counts", 0)
    assert high == keys * (versions + 1)
    last = kc.consume_range(b.bootstrap, "quix-counts", {0: (high - keys, high)})[0]
    counts = {r.key: json.loads(r.value)["count"] for r in last}
    assert counts == {f"k{k}".encode(): versions + 1 for k in range(keys)}, counts


def _offsets_log_records(b, partition=0):
    """(records, bytes) in the segment files of the standalone node's offsets partition: batch
    headers walked straight from the files (baseOffset, batchLength, ..., recordCount at 57)."""
    pdir = b.log_dir / "__tern_groups" / f"__consumer_offsets-{partition}"
    records = size = 0
    for f in sorted(pdir.glob("*.log")):
        data = f.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            length = int.from_bytes(data[pos + 8:pos + 12], "big", signed=True)
            if length <= 0 or pos + 12 + length > len(data):
                break
            records += int.from_bytes(data[pos + 57:pos + 61], "big", signed=True)
            pos += 12 + length
        size += pos
    return records, size


def _offsets_log_mentions(b, text, partition=0):
    """Whether any segment of the offsets partition holds `text` (its records are uncompressed,
    so a group id in a key is there byte for byte)."""
    pdir = b.log_dir / "__tern_groups" / f"__consumer_offsets-{partition}"
    return any(text in f.read_bytes() for f in pdir.glob("*.log"))


def _commit(bootstrap, group, topic, offsets):
    """One synchronous OffsetCommit per {partition: offset} in `offsets` (a list), outside
    group management, by one confluent-kafka consumer."""
    c = kc.consumer(bootstrap, **{"group.id": group, "enable.auto.commit": False})
    try:
        for o in offsets:
            res = c.commit(offsets=[kc.TopicPartition(topic, p, off) for p, off in o.items()],
                           asynchronous=False)
            assert all(tp.error is None for tp in res), res
    finally:
        c.close()


def _committed(bootstrap, group, topic, partitions):
    from confluent_kafka import ConsumerGroupTopicPartitions
    a = kc.admin(bootstrap)
    req = ConsumerGroupTopicPartitions(group, [kc.TopicPartition(topic, p) for p in range(partitions)])
    res = a.list_consumer_group_offsets([req], request_timeout=30)[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def test_consumer_offsets_are_compacted_by_the_cleaner(broker_factory, tmp_path):
    """The offsets partitions are compacted by the log cleaner (no start-up rewrite): many
    commits of the same partitions shrink to the latest per key, a deleted group's tombstones
    go after delete.retention.ms, and after kill -9 and a restart the group load reads the
    compacted log: OffsetFetch returns the latest commits, the deleted group has none."""
    b = _broker(broker_factory, tmp_path,
                "offsets.topic.num.partitions=1\noffsets.topic.segment.bytes=4096\n"
                "log.cleaner.min.cleanable.ratio=0.01\nlog.cleaner.delete.retention.ms=2000\n")
    topic, parts = "committed-topic", 3
    kc.create_topic(b.bootstrap, topic, partitions=parts)
    rounds = 150
    _commit(b.bootstrap, "g-gone", topic, [{p: 7 for p in range(parts)}] * 20)
    assert _offsets_log_mentions(b, b"g-gone")
    admin = kc.admin(b.bootstrap)  # kept referenced until its future is done
    admin.delete_consumer_groups(["g-gone"], request_timeout=30)["g-gone"].result(timeout=30)
    _commit(b.bootstrap, "g-live", topic, [{p: 1000 * p + v for p in range(parts)}
                                           for v in range(rounds)])
    latest = {p: 1000 * p + rounds - 1 for p in range(parts)}
    assert _committed(b.bootstrap, "g-live", topic, parts) == latest
    written = (20 + rounds) * parts

    # The cleaner removes the superseded commits (the active segment is never cleaned, so a few
    # recent versions stay), then the deleted group's records once its tombstones are older than
    # delete.retention.ms (later commits roll segments and make a clean due).
    def compacted():
        records, size = _offsets_log_records(b)
        return records < written // 4, (records, size)
    _wait(compacted, "the cleaner compacting __consumer_offsets")
    assert _metric(b, "tern_cleaner_removed_records_total") >= written // 2

    def tombstones_gone():
        _commit(b.bootstrap, "g-live", topic, [latest] * 10)
        return not _offsets_log_mentions(b, b"g-gone"), _offsets_log_records(b)
    _wait(tombstones_gone, "the deleted group's tombstones removed")

    # The load after a kill -9 replays the compacted log (with its gaps).
    b.kill9()
    b.start()
    assert _committed(b.bootstrap, "g-live", topic, parts) == latest
    assert _committed(b.bootstrap, "g-gone", topic, parts) == {p: -1001 for p in range(parts)}
    # And commits go on after the restart, onto the compacted log.
    _commit(b.bootstrap, "g-live", topic, [{0: 5}])
    b.stop()
    b.start()
    assert _committed(b.bootstrap, "g-live", topic, parts) == {**latest, 0: 5}
