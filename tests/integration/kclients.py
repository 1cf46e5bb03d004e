"""Thin helpers around the real Kafka clients (confluent-kafka and kafka-python).

The consumers here use manual assignment with explicit offsets and never
commit (group consumers live in test_groups.py and test_12_clients.py).
Every loop is bounded in iterations and wall-clock time.
"""

import collections
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

OP_TIMEOUT = 30.0
CONSUME_TIMEOUT = 120.0

Rec = collections.namedtuple("Rec", "partition offset key value headers timestamp")


def norm_headers(headers):
    """None and [] both mean "no headers"; values as bytes (or None)."""
    if not headers:
        return []
    out = []
    for k, v in headers:
        if isinstance(v, str):
            v = v.encode()
        out.append((k, v))
    return out


# --------------------------------------------------------------------- admin
def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, topic, partitions=1, wait=True):
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         request_timeout=OP_TIMEOUT)
    fs[topic].result(timeout=OP_TIMEOUT)
    if wait:
        wait_for_topic(bootstrap, topic, partitions)


def all_topics(bootstrap, timeout=10.0):
    return admin(bootstrap).list_topics(timeout=timeout).topics


def wait_for_topic(bootstrap, topic, partitions, timeout=OP_TIMEOUT):
    """Wait until metadata shows `topic` with `partitions` partitions, all led."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(10_000):
        try:
            tm = all_topics(bootstrap).get(topic)
            last = tm
            if (tm is not None and tm.error is None and len(tm.partitions) == partitions
                    and all(p.leader >= 0 and p.error is None for p in tm.partitions.values())):
                return tm
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"topic {topic!r} with {partitions} partitions not visible in "
                         f"metadata after {timeout}s; last seen: {last!r}"
                         + (f" partitions={sorted(last.partitions)}" if hasattr(last, "partitions") else ""))


def wait_topic_absent(bootstrap, topic, timeout=OP_TIMEOUT):
    deadline = time.monotonic() + timeout
    tm = None
    for _ in range(10_000):
        tm = all_topics(bootstrap).get(topic)
        if tm is None:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"topic {topic!r} still in metadata after {timeout}s: {tm!r}")


# ------------------------------------------------------------------ producer
class Deliveries:
    """Collects confluent delivery reports."""

    def __init__(self):
        self.acked = []    # Rec of acknowledged messages
        self.errors = []   # (KafkaError, key, value)

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append((err, msg.key(), msg.value()))
        else:
            self.acked.append(Rec(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                  norm_headers(msg.headers()), msg.timestamp()[1]))

    def assert_no_errors(self):
        assert not self.errors, (f"{len(self.errors)} delivery errors, first ones: "
                                 f"{[(str(e), k) for e, k, _ in self.errors[:5]]}")


def producer(bootstrap, **conf):
    base = {"bootstrap.servers": bootstrap, "linger.ms": 5}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


def produce(p, topic, value, deliveries, key=None, partition=None, headers=None,
            timestamp=None, max_wait=60.0):
    """p.produce() that waits (bounded) on a full local queue."""
    kwargs = {"value": value, "key": key, "on_delivery": deliveries}
    if partition is not None:
        kwargs["partition"] = partition
    if headers:
        kwargs["headers"] = headers
    if timestamp is not None:
        kwargs["timestamp"] = timestamp
    deadline = None
    while True:
        try:
            p.produce(topic, **kwargs)
            return
        except BufferError:
            if deadline is None:
                deadline = time.monotonic() + max_wait
            elif time.monotonic() > deadline:
                raise
            p.poll(0.05)


def flush(p, timeout=OP_TIMEOUT * 2):
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after flush({timeout})"


# ------------------------------------------------------------------ consumer
FATAL_CONSUMER_ERRORS = {
    KafkaError._AUTO_OFFSET_RESET,
    KafkaError.OFFSET_OUT_OF_RANGE,
    KafkaError._BAD_MSG,
    KafkaError.INVALID_MSG,
    KafkaError._UNKNOWN_PARTITION,
}


def consumer(bootstrap, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        # confluent-kafka requires a group.id even for assign(); nothing is
        # ever committed and no subscribe() is done.
        "group.id": "tern-it-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
    }
    base.update(conf)
    return Consumer(base)


def watermarks(bootstrap, topic, partition, timeout=OP_TIMEOUT, c=None):
    own = c is None
    c = c or consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout,
                                       cached=False)
    finally:
        if own:
            c.close()


def consume_range(bootstrap, topic, ranges, timeout=CONSUME_TIMEOUT, **conf):
    """Consume [start, end) of each partition given as {partition: (start, end)}.

    Returns {partition: [Rec, ...]} in fetch order.  Fails on timeout (with
    progress info) or on a fatal consumer error.
    """
    out = {p: [] for p in ranges}
    todo = {p: (s, e) for p, (s, e) in ranges.items() if e > s}
    if not todo:
        return out
    c = consumer(bootstrap, **conf)
    errors = []
    try:
        c.assign([TopicPartition(topic, p, s) for p, (s, e) in todo.items()])
        deadline = time.monotonic() + timeout
        pending = set(todo)
        for _ in range(1_000_000):
            if not pending:
                break
            if time.monotonic() > deadline:
                progress = {p: (todo[p], out[p][-1].offset if out[p] else None) for p in todo}
                raise AssertionError(
                    f"timed out after {timeout}s consuming {topic}; "
                    f"partition: ((start, end), last offset seen) = {progress}; "
                    f"consumer errors: {errors[:10]}")
            for m in c.consume(num_messages=10_000, timeout=0.5):
                err = m.error()
                if err is not None:
                    errors.append(str(err))
                    if err.code() in FATAL_CONSUMER_ERRORS:
                        raise AssertionError(f"consumer error on {topic}: {err}")
                    continue
                p = m.partition()
                if p not in pending:
                    continue
                if m.offset() >= todo[p][1]:
                    pending.discard(p)
                    continue
                out[p].append(Rec(p, m.offset(), m.key(), m.value(),
                                  norm_headers(m.headers()), m.timestamp()[1]))
                if m.offset() >= todo[p][1] - 1:
                    pending.discard(p)
    finally:
        c.close()
    return out


def consume_all(bootstrap, topic, partitions, timeout=CONSUME_TIMEOUT, expect_low=0, **conf):
    """Consume every partition from its low to its high watermark.

    Returns ({partition: [Rec]}, {partition: (low, high)}).
    """
    c = consumer(bootstrap)
    try:
        marks = {p: watermarks(bootstrap, topic, p, c=c) for p in partitions}
    finally:
        c.close()
    if expect_low is not None:
        for p, (low, _high) in marks.items():
            assert low == expect_low, f"{topic}-{p}: low watermark {low} != {expect_low}"
    return consume_range(bootstrap, topic, marks, timeout=timeout, **conf), marks


def assert_contiguous(recs_by_partition, marks):
    """Offsets of each partition are exactly low..high-1, no gaps, no dups."""
    for p, recs in recs_by_partition.items():
        low, high = marks[p]
        offsets = [r.offset for r in recs]
        if offsets != list(range(low, high)):
            missing = sorted(set(range(low, high)) - set(offsets))[:10]
            dups = [o for o, n in collections.Counter(offsets).items() if n > 1][:10]
            raise AssertionError(
                f"partition {p}: offsets are not contiguous {low}..{high - 1}: "
                f"got {len(offsets)} records, missing (first 10) {missing}, duplicated {dups}")


def wait_high_watermarks(bootstrap, topic, partitions, total, timeout=OP_TIMEOUT):
    """Wait until the high watermarks of `partitions` add up to `total`."""
    deadline = time.monotonic() + timeout
    marks = None
    c = consumer(bootstrap)
    try:
        for _ in range(10_000):
            marks = {p: watermarks(bootstrap, topic, p, c=c) for p in partitions}
            if sum(h for _, h in marks.values()) >= total or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        c.close()
    return marks


# -------------------------------------------------------------- kafka-python
def kp_producer(bootstrap, **conf):
    from kafka import KafkaProducer
    base = {"bootstrap_servers": bootstrap, "request_timeout_ms": 30_000, "max_block_ms": 30_000}
    base.update(conf)
    return KafkaProducer(**base)


def kp_consumer(bootstrap, **conf):
    from kafka import KafkaConsumer
    base = {
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": 30_000,
        "fetch_max_wait_ms": 100,
    }
    base.update(conf)
    return KafkaConsumer(**base)


def kp_consume_range(bootstrap, topic, ranges, timeout=CONSUME_TIMEOUT, **conf):
    """kafka-python version of consume_range(): {partition: (start, end)}."""
    from kafka import TopicPartition as KTP
    out = {p: [] for p in ranges}
    todo = {p: (s, e) for p, (s, e) in ranges.items() if e > s}
    if not todo:
        return out
    c = kp_consumer(bootstrap, **conf)
    try:
        tps = {p: KTP(topic, p) for p in todo}
        c.assign(list(tps.values()))
        for p, tp in tps.items():
            c.seek(tp, todo[p][0])
        pending = set(todo)
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            if not pending:
                break
            if time.monotonic() > deadline:
                progress = {p: (todo[p], out[p][-1].offset if out[p] else None) for p in todo}
                raise AssertionError(f"kafka-python: timed out after {timeout}s consuming "
                                     f"{topic}: {progress}")
            batch = c.poll(timeout_ms=500, max_records=10_000)
            for tp, msgs in batch.items():
                p = tp.partition
                for m in msgs:
                    if p not in pending or m.offset >= todo[p][1]:
                        pending.discard(p)
                        continue
                    out[p].append(Rec(p, m.offset, m.key, m.value, norm_headers(m.headers),
                                      m.timestamp))
                    if m.offset >= todo[p][1] - 1:
                        pending.discard(p)
    finally:
        c.close()
    return out


__all__ = [
    "AdminClient", "KafkaError", "NewPartitions", "NewTopic", "TopicPartition",
]
