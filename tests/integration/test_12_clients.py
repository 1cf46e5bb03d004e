"""Kafka clients of other generations than the suite's librdkafka 2.16 / kafka-python 3.0 defaults:
kafka-python pinned to the protocol of Kafka 0.11, 1.0 and 2.0, aiokafka 0.14, kafkajs 2.2 (Node.js,
tests/clients/js) and kcat on Debian's librdkafka 2.0. `./scripts/test` installs all of them.

Each client does the same round trip on a 3-partition topic: it produces records with keys,
headers and explicit timestamps in two batches per partition, consumes them as a member of a
consumer group, commits; a second member of the group then receives exactly the records produced
after that commit (so it resumed at the committed offsets), and the group's committed offsets are
read back. Offsets by time are looked up for a timestamp before, between and after the batches.
Later rounds go as compressed batches (gzip; kcat: lz4, snappy, zstd). Every value, key, header,
offset and timestamp is compared exactly. Every wait is bounded.
"""

import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest
from kafka import TopicPartition as KTP

import kclients as kc

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "tests" / "clients" / "js"
PARTITIONS = 3
WAIT = 60.0
PROC_TIMEOUT = 120.0

# Short initial rebalance delay so that each group round starts quickly.
GROUP_ARGS = ("--group-initial-rebalance-delay-ms", "300")


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(*GROUP_ARGS)


class Plan:
    """What one client produces, in two rounds, and what it must read back.

    First round: per partition, batch A (3 records at ts_a, ts_a+1, ts_a+2) then batch B (2
    records at ts_b, ts_b+1), offsets 0..4. Second round, after the group committed: one record
    per partition at offset 5, stamped by the client. With timestamps=False (kcat cannot set
    them) every record is stamped by the client.
    """

    A, B = 3, 2

    def __init__(self, client, timestamps=True):
        self.client = client
        self.topic = f"gen-{client}"
        self.group = f"gen-{client}-group"
        now = int(time.time() * 1000)
        self.ts_a = now - 600_000 if timestamps else None
        self.ts_b = self.ts_a + 60_000 if timestamps else None
        self.batch_a = [self._rec(p, i, "a", self._ts(self.ts_a, i)) for p in range(PARTITIONS)
                        for i in range(self.A)]
        self.batch_b = [self._rec(p, self.A + i, "b", self._ts(self.ts_b, i))
                        for p in range(PARTITIONS) for i in range(self.B)]
        self.second = [self._rec(p, self.A + self.B, "c", None) for p in range(PARTITIONS)]

    @staticmethod
    def _ts(base, i):
        return None if base is None else base + i

    def _rec(self, p, offset, batch, ts):
        return {
            "partition": p,
            "offset": offset,
            "key": f"k-{p}-{offset}",
            "value": f"{self.client} {batch} p{p} #{offset}",
            "headers": [["client", self.client], ["batch", batch]],
            "timestamp": ts,
        }

    def timestamp_at(self, offset):
        """The timestamp of the first-round record at `offset` (any partition)."""
        (ts,) = {r["timestamp"] for r in self.first if r["offset"] == offset}
        return ts

    @property
    def first(self):
        return self.batch_a + self.batch_b

    def lookups(self):
        """Timestamp lookups: name -> (timestamp, expected offset in every partition)."""
        assert self.ts_a is not None
        return {
            "before": (self.ts_a - 60_000, 0),
            "first_of_a": (self.ts_a, 0),
            "inside_a": (self.ts_a + 1, 1),
            "between": (self.ts_a + 30_000, self.A),
            "first_of_b": (self.ts_b, self.A),
            "last_of_b": (self.ts_b + 1, self.A + 1),
        }


def sort_recs(recs):
    return sorted(recs, key=lambda r: (r["partition"], r["offset"]))


def assert_records(got, want, what, timestamps=True):
    """Exact partition/offset/key/value/headers, and timestamps where the plan set them."""
    got, want = sort_recs(got), sort_recs(want)

    def norm(r, w):
        out = {k: r[k] for k in ("partition", "offset", "key", "value")}
        out["headers"] = [list(h) for h in r["headers"]]
        if timestamps and w is not None and w["timestamp"] is not None:
            out["timestamp"] = r["timestamp"]
        return out
    pairs = list(zip(got, want)) if len(got) == len(want) else [(r, None) for r in got]
    got_n = [norm(r, w) for r, w in pairs]
    want_n = [norm(w, w) for w in want] if len(got) == len(want) else \
        [norm(w, None) for w in want]
    assert got_n == want_n, f"{what}: records differ\n got: {got_n}\nwant: {want_n}"


def committed_per_partition(n):
    return {p: n for p in range(PARTITIONS)}


def create_topic(broker, plan):
    kc.create_topic(broker.bootstrap, plan.topic, PARTITIONS)


def run(cmd, timeout=PROC_TIMEOUT, input=None, env=None, what=None):
    """Run a client process, bounded in time; returns stdout. Fails with its stderr."""
    try:
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                             env=env, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{what or cmd[0]} did not finish within {timeout}s "
                             f"(killed); stderr:\n{e.stderr}") from None
    assert res.returncode == 0, (f"{what or cmd[0]} exited with {res.returncode}; "
                                 f"stderr:\n{res.stderr[-4000:]}")
    return res.stdout


def group_committed(bootstrap, group, topic):
    """The group's committed offsets as seen by librdkafka's admin API (a third client)."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    a = kc.admin(bootstrap)
    fs = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [kc.TopicPartition(topic, p)
                                              for p in range(PARTITIONS)])],
        request_timeout=kc.OP_TIMEOUT)
    res = fs[group].result(timeout=kc.OP_TIMEOUT)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


# ------------------------------------------------------------------------------ kafka-python
def kp_records(batch):
    out = []
    for tp, msgs in batch.items():
        for m in msgs:
            out.append({
                "partition": tp.partition, "offset": m.offset,
                "key": m.key.decode() if m.key is not None else None,
                "value": m.value.decode() if m.value is not None else None,
                "headers": [[k, v.decode()] for k, v in (m.headers or [])],
                "timestamp": m.timestamp,
            })
    return out


def kp_group_consume(bootstrap, plan, count, api_version):
    c = kc.kp_consumer(bootstrap, group_id=plan.group, api_version=api_version,
                       session_timeout_ms=10_000, heartbeat_interval_ms=1_000)
    try:
        c.subscribe([plan.topic])
        recs = []
        deadline = time.monotonic() + WAIT
        while len(recs) < count:
            assert time.monotonic() < deadline, \
                f"kafka-python {api_version}: {len(recs)}/{count} records after {WAIT}s as a group"
            recs += kp_records(c.poll(timeout_ms=500))
        c.commit()
        tps = [KTP(plan.topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: c.committed(tp) for tp in tps}
    finally:
        c.close()
    return recs, committed


@pytest.mark.parametrize("api_version", [(0, 11), (1, 0), (2, 0)],
                         ids=["kafka-0.11", "kafka-1.0", "kafka-2.0"])
def test_kafka_python_old_protocol(gbroker, api_version):
    plan = Plan("kp-" + "-".join(map(str, api_version)))
    create_topic(gbroker, plan)
    prod = kc.kp_producer(gbroker.bootstrap, api_version=api_version, acks="all", linger_ms=5)
    try:
        for batch in (plan.batch_a, plan.batch_b):
            futs = [prod.send(plan.topic, value=r["value"].encode(), key=r["key"].encode(),
                              partition=r["partition"], timestamp_ms=r["timestamp"],
                              headers=[(k, v.encode()) for k, v in r["headers"]])
                    for r in batch]
            prod.flush(timeout=WAIT)
            metas = [f.get(timeout=WAIT) for f in futs]
            assert [(m.partition, m.offset) for m in metas] == \
                [(r["partition"], r["offset"]) for r in batch]
        recs, committed = kp_group_consume(gbroker.bootstrap, plan, len(plan.first), api_version)
        assert_records(recs, plan.first, f"kafka-python {api_version} first group member")
        assert committed == committed_per_partition(5)

    finally:
        prod.close(timeout=WAIT)
    # The second round as gzip-compressed batches.
    prod = kc.kp_producer(gbroker.bootstrap, api_version=api_version, acks="all",
                          compression_type="gzip")
    try:
        futs = [prod.send(plan.topic, value=r["value"].encode(), key=r["key"].encode(),
                          partition=r["partition"],
                          headers=[(k, v.encode()) for k, v in r["headers"]])
                for r in plan.second]
        prod.flush(timeout=WAIT)
        assert [(m.partition, m.offset) for m in (f.get(timeout=WAIT) for f in futs)] == \
            [(r["partition"], r["offset"]) for r in plan.second]
    finally:
        prod.close(timeout=WAIT)

    recs, committed = kp_group_consume(gbroker.bootstrap, plan, len(plan.second), api_version)
    assert_records(recs, plan.second, f"kafka-python {api_version} second group member")
    assert committed == committed_per_partition(6)
    assert group_committed(gbroker.bootstrap, plan.group, plan.topic) == committed_per_partition(6)

    c = kc.kp_consumer(gbroker.bootstrap, api_version=api_version)
    try:
        tps = [KTP(plan.topic, p) for p in range(PARTITIONS)]
        for name, (ts, want) in plan.lookups().items():
            res = c.offsets_for_times({tp: ts for tp in tps}, timeout_ms=30_000)
            got = {tp.partition: (o.offset, o.timestamp) for tp, o in res.items()}
            want_ts = plan.timestamp_at(want)
            assert got == {p: (want, want_ts) for p in range(PARTITIONS)}, name
        # Later than every record: no offset (Kafka answers -1).
        late = max(int(time.time() * 1000), plan.ts_b) + 3_600_000
        res = c.offsets_for_times({tp: late for tp in tps}, timeout_ms=30_000)
        assert res == {tp: None for tp in tps}
        assert c.beginning_offsets(tps, timeout_ms=30_000) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps, timeout_ms=30_000) == {tp: 6 for tp in tps}
    finally:
        c.close()


# ------------------------------------------------------------------------------ aiokafka
def test_aiokafka(gbroker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition as ATP

    plan = Plan("aiokafka")
    create_topic(gbroker, plan)
    tps = [ATP(plan.topic, p) for p in range(PARTITIONS)]

    def ai_records(batch):
        return [{
            "partition": tp.partition, "offset": m.offset,
            "key": m.key.decode(), "value": m.value.decode(),
            "headers": [[k, v.decode()] for k, v in m.headers],
            "timestamp": m.timestamp,
        } for tp, msgs in batch.items() for m in msgs]

    async def produce(prod, batch):
        futs = [await prod.send(plan.topic, value=r["value"].encode(), key=r["key"].encode(),
                                partition=r["partition"], timestamp_ms=r["timestamp"],
                                headers=[(k, v.encode()) for k, v in r["headers"]])
                for r in batch]
        metas = [await asyncio.wait_for(f, WAIT) for f in futs]
        return [(m.partition, m.offset) for m in metas]

    async def group_consume(count):
        c = AIOKafkaConsumer(plan.topic, bootstrap_servers=gbroker.bootstrap, group_id=plan.group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
                             fetch_max_wait_ms=100, request_timeout_ms=30_000)
        await asyncio.wait_for(c.start(), WAIT)
        try:
            recs = []
            deadline = time.monotonic() + WAIT
            while len(recs) < count:
                assert time.monotonic() < deadline, \
                    f"aiokafka: {len(recs)}/{count} records after {WAIT}s as a group"
                recs += ai_records(await c.getmany(timeout_ms=500))
            await asyncio.wait_for(c.commit(), WAIT)
            committed = {tp.partition: await asyncio.wait_for(c.committed(tp), WAIT) for tp in tps}
        finally:
            await asyncio.wait_for(c.stop(), WAIT)
        return recs, committed

    async def producer(**conf):
        prod = AIOKafkaProducer(bootstrap_servers=gbroker.bootstrap, acks="all",
                                request_timeout_ms=30_000, **conf)
        await asyncio.wait_for(prod.start(), WAIT)
        return prod

    async def scenario():
        prod = await producer()
        try:
            for batch in (plan.batch_a, plan.batch_b):
                assert await produce(prod, batch) == [(r["partition"], r["offset"]) for r in batch]
            recs, committed = await group_consume(len(plan.first))
            assert_records(recs, plan.first, "aiokafka first group member")
            assert committed == committed_per_partition(5)
        finally:
            await asyncio.wait_for(prod.stop(), WAIT)
        # The second round as gzip-compressed batches.
        prod = await producer(compression_type="gzip")
        try:
            assert await produce(prod, plan.second) == \
                [(r["partition"], r["offset"]) for r in plan.second]
        finally:
            await asyncio.wait_for(prod.stop(), WAIT)
        recs, committed = await group_consume(len(plan.second))
        assert_records(recs, plan.second, "aiokafka second group member")
        assert committed == committed_per_partition(6)

        c = AIOKafkaConsumer(bootstrap_servers=gbroker.bootstrap, request_timeout_ms=30_000)
        await asyncio.wait_for(c.start(), WAIT)
        try:
            for name, (ts, want) in plan.lookups().items():
                res = await asyncio.wait_for(c.offsets_for_times({tp: ts for tp in tps}), WAIT)
                got = {tp.partition: (o.offset, o.timestamp) for tp, o in res.items()}
                want_ts = plan.timestamp_at(want)
                assert got == {p: (want, want_ts) for p in range(PARTITIONS)}, name
            late = max(int(time.time() * 1000), plan.ts_b) + 3_600_000
            res = await asyncio.wait_for(c.offsets_for_times({tp: late for tp in tps}), WAIT)
            assert res == {tp: None for tp in tps}
            assert await asyncio.wait_for(c.beginning_offsets(tps), WAIT) == {tp: 0 for tp in tps}
            assert await asyncio.wait_for(c.end_offsets(tps), WAIT) == {tp: 6 for tp in tps}
        finally:
            await asyncio.wait_for(c.stop(), WAIT)

    asyncio.run(asyncio.wait_for(scenario(), PROC_TIMEOUT))
    assert group_committed(gbroker.bootstrap, plan.group, plan.topic) == committed_per_partition(6)


# ------------------------------------------------------------------------------ kafkajs
def test_kafkajs(gbroker):
    node = shutil.which("node")
    assert node, "node (Node.js) is not on PATH; ./scripts/test needs it for kafkajs"
    assert (JS_DIR / "node_modules" / "kafkajs").is_dir(), \
        f"kafkajs is not installed in {JS_DIR} (./scripts/test runs npm ci there)"
    plan = Plan("kafkajs")  # kafkajs creates the topic itself
    lookups = plan.lookups()
    late = max(int(time.time() * 1000), plan.ts_b) + 3_600_000
    js_plan = {
        "bootstrap": gbroker.bootstrap, "topic": plan.topic, "group": plan.group,
        "partitions": PARTITIONS,
        "wait_ms": int(WAIT * 1000), "first": plan.first, "second": plan.second,
        "lookups": {**{k: ts for k, (ts, _) in lookups.items()}, "late": late},
    }
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    out = json.loads(run([node, str(JS_DIR / "roundtrip.js"), json.dumps(js_plan)], env=env,
                         what="kafkajs round trip"))

    assert out["created"] is True
    assert out["metadata"] == [{"topic": plan.topic,
                                "partitions": [[p, 0, 0] for p in range(PARTITIONS)]}]
    # One send with all five records of each partition: one batch per partition at offset 0.
    assert sorted((r["partition"], r["base_offset"], r["error"]) for r in out["produced"]) == \
        [(p, 0, 0) for p in range(PARTITIONS)]
    assert_records(out["first"], plan.first, "kafkajs first group member")
    assert out["committed_first"] == {str(p): 5 for p in range(PARTITIONS)}
    assert sorted((r["partition"], r["base_offset"]) for r in out["produced_second"]) == \
        [(p, 5) for p in range(PARTITIONS)]
    assert_records(out["second"], plan.second, "kafkajs second group member")
    assert out["committed_second"] == {str(p): 6 for p in range(PARTITIONS)}
    for name, (_ts, want) in lookups.items():
        assert out["by_time"][name] == {str(p): want for p in range(PARTITIONS)}, name
    # kafkajs maps "no offset for this time" (-1) to the high watermark.
    assert out["by_time"]["late"] == {str(p): 6 for p in range(PARTITIONS)}
    assert out["watermarks"] == {str(p): [0, 6] for p in range(PARTITIONS)}
    # The group as DescribeGroups shows it with the first member in it, and once both left.
    (during,) = out["group_while_consuming"]
    assert (during["group"], during["state"], during["protocol_type"], during["protocol"],
            during["error"]) == (plan.group, "Stable", "consumer", "RoundRobinAssigner", 0)
    assert [(m["client_id"], m["assignment"]) for m in during["members"]] == \
        [("tern-it-kafkajs", {plan.topic: list(range(PARTITIONS))})]
    assert out["group_after"] == [{"group": plan.group, "state": "Empty",
                                   "protocol_type": "consumer", "protocol": "", "error": 0,
                                   "members": []}]
    assert out["groups"] == [[plan.group, "consumer"]]
    assert group_committed(gbroker.bootstrap, plan.group, plan.topic) == committed_per_partition(6)


# ------------------------------------------------------------------------------ kcat
KCAT_CONF = ["-X", "socket.timeout.ms=30000", "-m", "30"]


def kcat_bin():
    path = shutil.which("kcat")
    assert path, "kcat is not on PATH (./scripts/test installs Debian's kcat package)"
    return path


def kcat_consume_json(cmd, what):
    lines = run(cmd, what=what).splitlines()
    recs = []
    for line in lines:
        m = json.loads(line)
        hdrs = m.get("headers") or []
        recs.append({
            "partition": m["partition"], "offset": m["offset"], "key": m["key"],
            "value": m["payload"],
            "headers": [[hdrs[i], hdrs[i + 1]] for i in range(0, len(hdrs), 2)],
            "timestamp": m["ts"],
        })
    return recs


def test_kcat_librdkafka_2_0(gbroker):
    kcat = kcat_bin()
    version = run([kcat, "-V"], what="kcat -V")
    assert "librdkafka 2.0" in version, f"expected Debian's librdkafka 2.0.x, got: {version}"
    plan = Plan("kcat", timestamps=False)
    create_topic(gbroker, plan)
    b = gbroker.bootstrap

    def produce(batch, codec):
        # kcat sets headers per run: one run per (partition, batch) with that batch's headers.
        for p in range(PARTITIONS):
            recs = [r for r in batch if r["partition"] == p]
            hdrs = []
            for k, v in recs[0]["headers"]:
                hdrs += ["-H", f"{k}={v}"]
            assert all(r["headers"] == recs[0]["headers"] for r in recs)
            lines = "".join(f"{r['key']}\t{r['value']}\n" for r in recs)
            run([kcat, "-b", b, "-P", "-t", plan.topic, "-p", str(p), "-K", "\t", *hdrs,
                 "-z", codec, "-X", "acks=all", *KCAT_CONF], input=lines,
                what=f"kcat -P -z {codec} p{p}")

    # Each round with another codec librdkafka 2.0 brings.
    produce(plan.batch_a, "lz4")
    # Batch B must carry later timestamps than batch A (kcat takes the producer's clock).
    time.sleep(0.05)
    produce(plan.batch_b, "snappy")

    fmt = ["-J", *KCAT_CONF]
    group = [kcat, "-b", b, "-G", plan.group, plan.topic, "-X", "auto.offset.reset=earliest",
             "-X", "session.timeout.ms=10000", "-X", "heartbeat.interval.ms=1000", *fmt]
    recs = kcat_consume_json(group + ["-c", str(len(plan.first))], "kcat -G (first member)")
    assert_records(recs, plan.first, "kcat first group member", timestamps=False)
    # kcat commits on close (enable.auto.commit, offsets stored per delivered record).
    assert group_committed(b, plan.group, plan.topic) == committed_per_partition(5)

    produce(plan.second, "zstd")
    recs = kcat_consume_json(group + ["-c", str(len(plan.second))], "kcat -G (second member)")
    assert_records(recs, plan.second, "kcat second group member", timestamps=False)
    assert group_committed(b, plan.group, plan.topic) == committed_per_partition(6)

    # Plain consumer from the beginning, exits at the end of every partition.
    everything = kcat_consume_json([kcat, "-b", b, "-C", "-t", plan.topic, "-o", "beginning",
                                    "-e", *fmt], "kcat -C -o beginning -e")
    assert_records(everything, plan.first + plan.second, "kcat -C -o beginning",
                   timestamps=False)

    # Offsets by time: between the last record of batch A and the first of batch B.
    by_part = {p: sort_recs([r for r in everything if r["partition"] == p])
               for p in range(PARTITIONS)}
    for p, recs in by_part.items():
        ts = [r["timestamp"] for r in recs]
        assert ts == sorted(ts), f"partition {p}: timestamps not increasing: {ts}"
        assert ts[Plan.A - 1] < ts[Plan.A], f"partition {p}: batch B not later than A: {ts}"
    queries = {
        "before": ({p: 0 for p in range(PARTITIONS)}, {p: 0 for p in range(PARTITIONS)}),
        "between": ({p: by_part[p][Plan.A - 1]["timestamp"] + 1 for p in range(PARTITIONS)},
                    {p: Plan.A for p in range(PARTITIONS)}),
        "last": ({p: by_part[p][-1]["timestamp"] for p in range(PARTITIONS)},
                 {p: 5 for p in range(PARTITIONS)}),
        "after": ({p: by_part[p][-1]["timestamp"] + 3_600_000 for p in range(PARTITIONS)},
                  {p: -1 for p in range(PARTITIONS)}),
    }
    for name, (ts, want) in queries.items():
        args = []
        for p in range(PARTITIONS):
            args += ["-t", f"{plan.topic}:{p}:{ts[p]}"]
        out = run([kcat, "-b", b, "-Q", *args, *KCAT_CONF], what=f"kcat -Q ({name})")
        got = parse_kcat_query(out, plan.topic)
        assert got == want, f"kcat -Q {name}: {got} != {want}\n{out}"

    # The consumer's own lookups: start at a timestamp, and relative to the end.
    for p in range(PARTITIONS):
        ts = queries["between"][0][p]
        recs = kcat_consume_json([kcat, "-b", b, "-C", "-t", plan.topic, "-p", str(p),
                                  "-o", f"s@{ts}", "-e", *fmt], f"kcat -C -o s@{ts}")
        assert [r["offset"] for r in recs] == [3, 4, 5], f"partition {p}: {recs}"
        recs = kcat_consume_json([kcat, "-b", b, "-C", "-t", plan.topic, "-p", str(p),
                                  "-o", "-2", "-e", *fmt], "kcat -C -o -2")
        assert [(r["offset"], r["key"]) for r in recs] == [(4, f"k-{p}-4"), (5, f"k-{p}-5")]

    # Metadata as librdkafka 2.0 sees it: this broker leads every partition.
    meta = json.loads(run([kcat, "-b", b, "-L", "-t", plan.topic, "-J", *KCAT_CONF],
                          what="kcat -L"))
    assert [(br["id"], br["name"]) for br in meta["brokers"]] == [(0, b)]
    (topic,) = meta["topics"]
    assert topic["topic"] == plan.topic and "error" not in topic, topic
    assert [(q["partition"], q["leader"], q["replicas"], q["isrs"])
            for q in sorted(topic["partitions"], key=lambda q: q["partition"])] == \
        [(q, 0, [{"id": 0}], [{"id": 0}]) for q in range(PARTITIONS)]


def parse_kcat_query(out, topic):
    """kcat -Q prints ` <topic> [<p>] offset <o>` per partition."""
    got = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == topic and words[2] == "offset":
            got[int(words[1].strip("[]"))] = int(words[3])
    return got
