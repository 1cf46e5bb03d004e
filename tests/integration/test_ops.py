"""Operations: retention (size, time), DeleteRecords, dynamic topic/broker configs surviving a
restart, the Prometheus endpoint (parsed with prometheus_client), and every `tern` CLI
subcommand against a running broker.  Loops are bounded; no timing assertions."""

import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource)
from prometheus_client.parser import text_string_to_metric_families

import kclients as kc
from harness import free_port

RETENTION_FLAGS = ("--log-retention-check-interval-ms", "200")


def _metrics_broker(broker_factory, *extra):
    port = free_port()
    b = broker_factory("--metrics-listener", f"127.0.0.1:{port}", *RETENTION_FLAGS, *extra)
    b.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return b


def _produce(bootstrap, topic, n, partition=0, size=200, timestamp=None, tag="r"):
    d = kc.Deliveries()
    p = kc.producer(bootstrap, acks="all", linger_ms=0, batch_num_messages=1)
    for i in range(n):
        kwargs = {"timestamp": timestamp} if timestamp is not None else {}
        kc.produce(p, topic, f"{tag}-{i}-".encode() + b"x" * size, d, partition=partition, **kwargs)
    kc.flush(p)
    d.assert_no_errors()


def _wait_low(bootstrap, topic, partition, pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    low = high = None
    for _ in range(10_000):
        low, high = kc.watermarks(bootstrap, topic, partition)
        if pred(low, high):
            return low, high
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"{topic}-{partition}: watermarks stayed at {(low, high)}")


def _segments(broker, topic, partition=0):
    return sorted(int(p.stem) for p in broker.partition_dir(topic, partition).glob("*.log"))


def _create(bootstrap, topic, partitions=1, **configs):
    from confluent_kafka.admin import NewTopic
    a = kc.admin(bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                   config={k: str(v) for k, v in configs.items()})],
                         request_timeout=30)
    fs[topic].result(timeout=30)
    kc.wait_for_topic(bootstrap, topic, partitions)


def _consume_from(bootstrap, topic, offset, n, reset="earliest"):
    """First `n` records from `offset` (the consumer resets as auto.offset.reset says)."""
    c = kc.consumer(bootstrap, **{"auto.offset.reset": reset})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + 60
        for _ in range(10_000):
            if len(out) >= n or time.monotonic() > deadline:
                break
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is None:
                    out.append((m.offset(), m.value()))
    finally:
        c.close()
    return out[:n]


# ------------------------------------------------------------------ retention
def test_retention_by_size_deletes_whole_old_segments(broker_factory):
    b = broker_factory(*RETENTION_FLAGS)
    topic = "ops-ret-size"
    _create(b.bootstrap, topic, **{"segment.bytes": 4096})
    _produce(b.bootstrap, topic, 200, size=300)
    segs_before = _segments(b, topic)
    assert len(segs_before) > 5, segs_before
    # Closed segments are exactly their log size on disk; the active one also holds the zero
    # padding written ahead of the log end, so it is left out.
    closed = sorted(b.partition_dir(topic, 0).glob("*.log"))[:-1]
    total = sum(p.stat().st_size for p in closed)
    a = kc.admin(b.bootstrap)
    r = ConfigResource(ConfigResource.Type.TOPIC, topic,
                       incremental_configs=[ConfigEntry("retention.bytes", str(total // 2),
                                                        incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([r])[r].result(timeout=30)
    low, high = _wait_low(b.bootstrap, topic, 0, lambda lo, hi: lo > 0)
    assert high == 200
    # Whole segments only: the new start is a former segment base; newer segments are intact.
    assert low in segs_before, (low, segs_before)
    segs_after = _segments(b, topic)
    assert segs_after == [s for s in segs_before if s >= low]
    # A real client sees exactly [low, 200).
    recs = _consume_from(b.bootstrap, topic, low, 200 - low)
    assert [o for o, _ in recs] == list(range(low, 200))
    # Below the start: OFFSET_OUT_OF_RANGE, and auto.offset.reset=earliest lands on `low`.
    recs = _consume_from(b.bootstrap, topic, 0, 1, reset="earliest")
    assert recs and recs[0][0] == low
    # Survives a restart.
    b.restart()
    assert kc.watermarks(b.bootstrap, topic, 0) == (low, 200)


def test_retention_by_time_keeps_newer_records(broker_factory):
    b = broker_factory(*RETENTION_FLAGS)
    topic = "ops-ret-time"
    _create(b.bootstrap, topic, **{"segment.bytes": 4096, "retention.ms": 3_600_000})
    old = int(time.time() * 1000) - 2 * 3_600_000
    _produce(b.bootstrap, topic, 60, size=300, timestamp=old, tag="old")
    _produce(b.bootstrap, topic, 40, size=300, tag="new")
    low, high = _wait_low(b.bootstrap, topic, 0, lambda lo, hi: lo > 0)
    assert high == 100 and 0 < low <= 60, (low, high)
    recs = _consume_from(b.bootstrap, topic, low, 100 - low)
    assert [o for o, _ in recs] == list(range(low, 100))
    assert all(v.startswith(b"new-") for o, v in recs if o >= 60)


def test_delete_records_moves_log_start(broker_factory):
    b = broker_factory()
    topic = "ops-delrec"
    _create(b.bootstrap, topic, **{"segment.bytes": 4096})
    _produce(b.bootstrap, topic, 50, size=300)
    a = kc.admin(b.bootstrap)
    if not hasattr(a, "delete_records"):
        pytest.skip("confluent-kafka without delete_records")
    fs = a.delete_records([TopicPartition(topic, 0, 30)], request_timeout=30)
    res = list(fs.values())[0].result(timeout=30)
    assert res.low_watermark == 30
    assert kc.watermarks(b.bootstrap, topic, 0) == (30, 50)
    recs = _consume_from(b.bootstrap, topic, 10, 1)
    assert recs[0][0] == 30


# -------------------------------------------------------------------- configs
def test_describe_and_alter_configs_survive_restart(broker_factory):
    b = broker_factory()
    topic = "ops-cfg"
    _create(b.bootstrap, topic, **{"retention.ms": 123456})
    a = kc.admin(b.bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = a.describe_configs([res])[res].result(timeout=30)
    assert cfg["retention.ms"].value == "123456"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["segment.bytes"].value == "1073741824"

    r = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([r])[r].result(timeout=30)
    # Invalid and unknown values are rejected with INVALID_CONFIG.
    for entry in (ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
                  ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)):
        bad = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
        with pytest.raises(Exception) as ei:
            a.incremental_alter_configs([bad])[bad].result(timeout=30)
        assert ei.value.args[0].code() == kc.KafkaError.INVALID_CONFIG, str(ei.value)

    # Broker-level dynamic config.
    br = ConfigResource(ConfigResource.Type.BROKER, "0", incremental_configs=[
        ConfigEntry("log.retention.bytes", "99999999", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([br])[br].result(timeout=30)
    ro = ConfigResource(ConfigResource.Type.BROKER, "0", incremental_configs=[
        ConfigEntry("num.partitions", "4", incremental_operation=AlterConfigOpType.SET)])
    # A read-only broker config: Kafka answers INVALID_REQUEST (ConfigAdminManager maps the
    # "Cannot update these configs dynamically" ConfigException to InvalidRequestException).
    with pytest.raises(KafkaException) as ei:
        a.incremental_alter_configs([ro])[ro].result(timeout=30)
    assert ei.value.args[0].code() == kc.KafkaError.INVALID_REQUEST, str(ei.value)

    b.restart()
    a = kc.admin(b.bootstrap)
    cfg = a.describe_configs([res])[res].result(timeout=30)
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["retention.bytes"].value == "99999999"
    assert cfg["retention.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    bres = ConfigResource(ConfigResource.Type.BROKER, "0")
    bcfg = a.describe_configs([bres])[bres].result(timeout=30)
    assert bcfg["log.retention.bytes"].value == "99999999"
    assert bcfg["listeners"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert bcfg["listeners"].is_read_only
    # DescribeCluster through the admin client.
    md = a.describe_cluster(request_timeout=30).result(timeout=30)
    assert len(md.nodes) == 1 and md.controller.id == 0


# -------------------------------------------------------------------- metrics
def _scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        text = r.read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return fams


def _sum(fams, name, sample_name=None, **labels):
    f = fams[name]
    total = 0.0
    for s in f.samples:
        if sample_name and s.name != sample_name:
            continue
        if all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


def test_metrics_endpoint_parses_and_moves(broker_factory):
    b = _metrics_broker(broker_factory)
    topic = "ops-metrics"
    _create(b.bootstrap, topic, partitions=2)
    before = _scrape(b.metrics_url)
    for name in ("tern_requests", "tern_request_latency_seconds", "tern_received_bytes",
                 "tern_fsync_latency_seconds", "tern_log_write_latency_seconds",
                 "tern_cross_shard_messages_sent",
                 "tern_produce_batch_size_bytes", "tern_partition_log_end_offset"):
        assert name in before, sorted(before)
    produce_before = _sum(before, "tern_requests", api="Produce")
    _produce(b.bootstrap, topic, 50, partition=0)
    _produce(b.bootstrap, topic, 30, partition=1)
    kc.consume_all(b.bootstrap, topic, [0, 1])
    after = _scrape(b.metrics_url)
    assert _sum(after, "tern_requests", api="Produce") >= produce_before + 80
    assert _sum(after, "tern_requests", api="Fetch") > 0
    assert _sum(after, "tern_received_bytes") > _sum(before, "tern_received_bytes")
    assert _sum(after, "tern_sent_bytes") > _sum(before, "tern_sent_bytes")
    assert _sum(after, "tern_fsync_latency_seconds", "tern_fsync_latency_seconds_count") > 0
    # Every produced batch was written: at least one data write per partition.
    writes = _sum(after, "tern_log_write_latency_seconds", "tern_log_write_latency_seconds_count")
    assert writes >= 2, writes
    assert _sum(after, "tern_partition_log_end_offset", topic=topic, partition="0") == 50
    assert _sum(after, "tern_partition_log_end_offset", topic=topic, partition="1") == 30
    assert _sum(after, "tern_produce_batch_size_bytes", "tern_produce_batch_size_bytes_count") >= 80
    # Group offsets and lag.
    subprocess.run([str(b.binary), "group", "seek", "mg", "-t", topic, "--to-offset", "20",
                    "-b", b.bootstrap], check=True, capture_output=True, timeout=60)
    fams = _scrape(b.metrics_url)
    assert _sum(fams, "tern_group_committed_offset", group="mg", topic=topic) == 40
    assert _sum(fams, "tern_group_lag", group="mg", topic=topic) == (50 - 20) + (30 - 20)


# ------------------------------------------------------------------------ CLI
def murmur2(data):
    """Kafka's Utils.murmur2 (the Java client's default partitioner hash), as a signed int32."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length - length % 4
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition(key, partitions):
    """Kafka's partition for a keyed record: toPositive(murmur2(key)) % partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_matches_kafkas_reference_vectors():
    # Kafka's UtilsTest.testMurmur2.
    for data, want in ((b"21", -973932308), (b"foobar", -790332482),
                       (b"a-little-bit-long-string", -985981536),
                       (b"a-little-bit-longer-string", -1486304829),
                       (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
                       (b"abc", 479470107)):
        assert murmur2(data) == want, data


def _tern(b, *args, stdin=None, ok=True):
    p = subprocess.run([str(b.binary), *args], input=stdin, capture_output=True, text=True,
                       timeout=120)
    if ok:
        assert p.returncode == 0, f"tern {args}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def test_cli_subcommands(broker_factory):
    b = _metrics_broker(broker_factory)
    bs = ("-b", b.bootstrap)
    t = "ops-cli"
    out = _tern(b, "topic", "create", t, "-p", "2", "-c", "retention.ms=86400000", *bs).stdout
    assert "created topic" in out
    p = _tern(b, "topic", "create", t, *bs, ok=False)
    assert p.returncode == 1 and "TopicAlreadyExists" in p.stderr
    assert t in _tern(b, "topic", "list", *bs).stdout
    _tern(b, "topic", "alter-config", t, "--set", "segment.bytes=1048576", *bs)
    p = _tern(b, "topic", "alter-config", t, "--set", "retention.ms=abc", *bs, ok=False)
    assert p.returncode == 1 and "InvalidConfig" in p.stderr
    desc = _tern(b, "topic", "describe", t, *bs).stdout
    assert "segment.bytes" in desc and "1048576" in desc and "DYNAMIC_TOPIC_CONFIG" in desc

    lines = "".join(f"k{i}:v{i}\n" for i in range(10))
    err = _tern(b, "produce", t, "-K", ":", "-H", "src=test", *bs, stdin=lines).stderr
    assert "produced 10 records" in err
    _tern(b, "produce", t, "-p", "1", *bs, stdin="plain\n")
    out = _tern(b, "consume", t, "--from-beginning", "-n", "11", "--timeout-ms", "10000",
                "-f", "%p|%o|%k|%v|%h\\n", *bs).stdout.splitlines()
    assert len(out) == 11, out
    kv = sorted(tuple(line.split("|")[2:4]) for line in out)
    assert ("", "plain") in kv and ("k3", "v3") in kv
    assert all(line.endswith("|src=test") for line in out if "|k" in line)
    # Keys go to Kafka's partition for them (murmur2, computed here independently of tern).
    landed = sorted((line.split("|")[2], int(line.split("|")[0])) for line in out
                    if line.split("|")[2])
    assert landed == sorted((f"k{i}", kafka_partition(f"k{i}".encode(), 2)) for i in range(10))
    assert {p for _, p in landed} == {0, 1}, landed  # the check can tell partitioners apart

    # Group consume commits; describe shows offsets and lag; seek; delete.
    _tern(b, "consume", t, "-g", "cg", "--from-beginning", "-n", "11", "--timeout-ms", "10000",
          *bs)
    desc = _tern(b, "group", "describe", "cg", *bs).stdout
    assert "TOTAL-LAG 0" in desc, desc
    assert "cg" in _tern(b, "group", "list", *bs).stdout
    _tern(b, "group", "seek", "cg", "-t", t, "--to-earliest", *bs)
    desc = _tern(b, "group", "describe", "cg", *bs).stdout
    assert "TOTAL-LAG 11" in desc, desc
    out = _tern(b, "consume", t, "-g", "cg", "-n", "11", "--timeout-ms", "10000", *bs).stdout
    assert len(out.splitlines()) == 11
    _tern(b, "group", "delete", "cg", *bs)
    assert "cg" not in _tern(b, "group", "list", *bs).stdout.split()

    # Consume by offset and timestamp.
    out = _tern(b, "consume", t, "-p", "1", "--offset", "0", "-n", "1", "--timeout-ms", "10000",
                "-f", "%o\\n", *bs).stdout
    assert out.strip() == "0"
    out = _tern(b, "consume", t, "--timestamp", str(int(time.time() * 1000) + 3_600_000),
                "--timeout-ms", "1500", *bs).stdout
    assert out == ""

    info = _tern(b, "cluster", "info", *bs).stdout
    assert "Cluster id:" in info and str(b.port) in info and "Log dir:" in info
    _tern(b, "topic", "delete", t, *bs)
    p = _tern(b, "topic", "describe", t, *bs, ok=False)
    assert p.returncode == 1

    # Scriptable errors and --help everywhere.
    dead = f"127.0.0.1:{free_port()}"
    p = _tern(b, "topic", "list", "-b", dead, ok=False)
    assert p.returncode == 1 and f"no broker at {dead}: connection refused" in p.stderr
    p = _tern(b, "topic", "frobnicate", ok=False)
    assert p.returncode == 2
    for sub in (["topic", "create"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"],
                ["topic", "alter-config"], ["produce"], ["consume"], ["group", "list"],
                ["group", "describe"], ["group", "delete"], ["group", "seek"],
                ["cluster", "info"]):
        p = _tern(b, *sub, "--help")
        assert "Usage:" in p.stdout


def test_cluster_info_of_a_standalone_node(broker_factory):
    """`tern cluster info` against one node: one alive broker, a one-voter quorum whose log end
    moves with each metadata change, and no leaderless partitions."""
    b = broker_factory()
    bs = ("-b", b.bootstrap)

    def section(text, title):
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith(title))
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
        return [line.split() for line in lines[start:end]]

    info = _tern(b, "cluster", "info", *bs).stdout
    brokers = section(info, "BROKER ")
    assert brokers[0] == ["BROKER", "LISTENERS", "RACK", "STATE"], info
    ((node, listeners, rack, state),) = brokers[1:]
    assert (listeners, rack, state) == (b.bootstrap, "-", "alive"), info
    assert f"Controller: {node}" in info
    quorum = section(info, "Quorum:")
    assert quorum[0][:3] == ["Quorum:", "leader", node], info
    ((voter, role, end, lag),) = quorum[2:]
    assert (voter, role, lag) == (node, "leader", "0"), info
    assert "Partitions without a leader: none" in info

    _tern(b, "topic", "create", "info-a", "-p", "3", *bs)
    info = _tern(b, "cluster", "info", *bs).stdout
    ((_, _, end_after, lag),) = section(info, "Quorum:")[2:]
    assert int(end_after) > int(end) and lag == "0", info
    assert "Partitions without a leader: none" in info


def test_request_queue_time_metric_and_its_switch(broker_factory, tmp_path):
    # On by default: every produce request gets a socket-queue observation.
    b = _metrics_broker(broker_factory)
    _create(b.bootstrap, "ops-queue", partitions=1)
    _produce(b.bootstrap, "ops-queue", 20)
    fams = _scrape(b.metrics_url)
    n = _sum(fams, "tern_request_queue_seconds", "tern_request_queue_seconds_count", api="Produce")
    assert n >= 20, n
    # tern.metrics.request.queue.enable=false: no peek, no observations, the broker serves as before.
    cfg = tmp_path / "no-queue-metric.properties"
    cfg.write_text("tern.metrics.request.queue.enable=false\n")
    port = free_port()
    off = broker_factory("--metrics-listener", f"127.0.0.1:{port}", config=cfg)
    off.metrics_url = f"http://127.0.0.1:{port}/metrics"
    _create(off.bootstrap, "ops-queue", partitions=1)
    _produce(off.bootstrap, "ops-queue", 20)
    fams = _scrape(off.metrics_url)
    assert _sum(fams, "tern_requests", api="Produce") >= 20
    assert _sum(fams, "tern_request_queue_seconds", "tern_request_queue_seconds_count") == 0
