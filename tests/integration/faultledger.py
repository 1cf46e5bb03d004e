"""The fault suite's ledger: every record a real client got acknowledged, and the read-back check.

`Ledger(bootstrap, topic, partitions)` runs an idempotent acks=all confluent-kafka producer
that writes "p<partition>-<n>" values, n counting up per partition, and records the
(offset, value) of every acknowledged one in delivery order. Delivery errors are kept, not
raised: a fault may time a request out, and that record is then simply not in the ledger
(it may or may not be in the log, as Kafka promises).

`Ledger.verify()` reads the whole topic back up to each partition's high watermark twice:
with an assign() consumer at offset 0 (no group coordinator involved) and with a group
consumer (subscribe, a fresh group id, commits). For each read it checks per partition that
every acknowledged record is in the log exactly once, at its acknowledged offset, that the
log holds no value twice (idempotence across leader changes), that the values are in the
order they were produced, and that the offsets are contiguous. It returns the counts it
checked; `Ledger.totals` adds them up over the test for the suite's printed ledger line.

A group read that gets no records within its bound is not raised at once: it goes to
`group_failures`, so the assign() checks of the test still run, and the test fails on it after
them (`assert_group_reads`). Later group reads in the same test are skipped then. A group read
that returns wrong records fails at once.

Every loop is bounded in time.
"""

import time
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

import kclients as kc

OP = 60.0
READ_TIMEOUT = 120.0
GROUP_READ_TIMEOUT = 30.0


class LedgerError(AssertionError):
    pass


class GroupReadTimeout(LedgerError):
    pass


class Ledger:
    def __init__(self, bootstrap, topic, partitions, **producer_conf):
        conf = dict(acks="all", enable_idempotence=True, message_timeout_ms=120_000,
                    retry_backoff_ms=100, linger_ms=5)
        conf.update(producer_conf)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.p = kc.producer(bootstrap, **conf)
        self.acked = {p: [] for p in range(partitions)}
        self.errors = []
        self.sent = {p: 0 for p in range(partitions)}
        self.verifications = 0
        self.group_failures = []
        self.group_reads = 0
        self.totals = {"acked": 0, "read": 0, "checks": 0}

    def _cb(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked[msg.partition()].append((msg.offset(), msg.value()))

    def acked_count(self):
        return sum(len(v) for v in self.acked.values())

    def send(self, count, poll=True):
        """Queue `count` records spread over the partitions (round robin)."""
        for _ in range(count):
            part = min(self.sent, key=self.sent.get)
            v = f"p{part}-{self.sent[part]}".encode()
            self.sent[part] += 1
            deadline = time.monotonic() + OP
            while True:
                try:
                    self.p.produce(self.topic, value=v, partition=part, on_delivery=self._cb)
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        raise
                    self.p.poll(0.05)
            if poll:
                self.p.poll(0)

    def poll(self, timeout=0.0):
        self.p.poll(timeout)

    def flush(self, timeout=OP * 3, allow_errors=False):
        left = self.p.flush(timeout)
        if left:
            raise LedgerError(f"{left} records not delivered within {timeout}s")
        if self.errors and not allow_errors:
            raise LedgerError(f"{len(self.errors)} delivery errors: {self.errors[:5]}")

    def high_watermarks(self, timeout=OP):
        c = kc.consumer(self.bootstrap)
        try:
            return {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout,
                                               cached=False)[1]
                    for p in range(self.partitions)}
        finally:
            c.close()

    def read_assigned(self, ends, timeout=READ_TIMEOUT):
        """{partition: [(offset, value)]} of [0, ends[p]) through an assign() consumer."""
        got = kc.consume_range(self.bootstrap, self.topic,
                               {p: (0, e) for p, e in ends.items()}, timeout=timeout)
        return {p: [(r.offset, r.value) for r in recs] for p, recs in got.items()}

    def read_back(self, ends, timeout=GROUP_READ_TIMEOUT):
        """{partition: [(offset, value)]} of [0, ends[p]) through a group consumer."""
        group = f"ledger-{uuid.uuid4().hex[:12]}"
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "auto.commit.interval.ms": 500, "enable.partition.eof": False,
                      "fetch.wait.max.ms": 100, "session.timeout.ms": 10_000,
                      "heartbeat.interval.ms": 1000})
        out = {p: [] for p in range(self.partitions)}
        pending = {p for p, e in ends.items() if e > 0}
        errors = []
        try:
            c.subscribe([self.topic])
            deadline = time.monotonic() + timeout
            while pending:
                if time.monotonic() > deadline:
                    progress = {p: (ends[p], out[p][-1][0] if out[p] else None) for p in ends}
                    raise GroupReadTimeout(f"group consumer {group} timed out after {timeout}s; "
                                      f"partition: (end, last offset) = {progress}; "
                                      f"errors {errors[:5]}")
                for m in c.consume(num_messages=10_000, timeout=0.5):
                    err = m.error()
                    if err is not None:
                        errors.append(str(err))
                        if err.code() in (KafkaError.OFFSET_OUT_OF_RANGE,
                                          KafkaError._AUTO_OFFSET_RESET):
                            raise LedgerError(f"consumer error: {err}")
                        continue
                    p = m.partition()
                    if m.offset() < ends[p]:
                        out[p].append((m.offset(), m.value()))
                    if m.offset() >= ends[p] - 1:
                        pending.discard(p)
        finally:
            c.close()
        return out

    def verify(self, what=""):
        """Reads the topic back and checks the ledger against it; returns the counts."""
        acked_ends = {p: (max(o for o, _ in a) + 1 if a else 0) for p, a in self.acked.items()}
        hw = self.high_watermarks()
        for p in range(self.partitions):
            if hw[p] < acked_ends[p]:
                raise LedgerError(f"{what}: partition {p} high watermark {hw[p]} is below an "
                                  f"acknowledged offset {acked_ends[p] - 1}")
        records = self.read_assigned(hw)
        checked = 0
        for p, recs in records.items():
            check_partition(p, recs, self.acked[p], what)
            checked += len(self.acked[p])
        read = sum(len(r) for r in records.values())
        if not self.group_failures:
            try:
                grouped = self.read_back(hw)
            except GroupReadTimeout as e:
                self.group_failures.append(f"{what}: {e}")
            else:
                for p, recs in grouped.items():
                    check_partition(p, recs, self.acked[p], f"{what} (group consumer)")
                self.group_reads += 1
        self.verifications += 1
        self.totals["acked"] = self.acked_count()
        self.totals["read"] = read
        self.totals["checks"] += checked
        return {"acked": self.acked_count(), "read": read, "checked": checked}


def check_partition(p, records, acked, what=""):
    """Every acknowledged (offset, value) is in `records` exactly once at its offset; the log
    has no duplicate value, its values are in production order and its offsets contiguous."""
    where = f"{what}: partition {p}"
    offsets = [o for o, _ in records]
    if offsets != list(range(len(records))):
        gaps = [(a, b) for a, b in zip(offsets, offsets[1:]) if b != a + 1][:5]
        raise LedgerError(f"{where}: offsets not contiguous from 0 (first breaks {gaps})")
    values = [v for _, v in records]
    seen = {}
    for o, v in records:
        if v in seen:
            raise LedgerError(f"{where}: {v!r} in the log twice (offsets {seen[v]} and {o})")
        seen[v] = o
    order = [int(v.split(b"-")[1]) for v in values]
    if order != sorted(order):
        bad = next(i for i in range(1, len(order)) if order[i] < order[i - 1])
        raise LedgerError(f"{where}: out of order at offset {bad}: {values[bad - 1]!r} then "
                          f"{values[bad]!r}")
    for o, v in acked:
        if seen.get(v) != o:
            raise LedgerError(f"{where}: acknowledged {v!r} at offset {o}, the log has it at "
                              f"{seen.get(v)} (offset {o} holds "
                              f"{values[o] if o < len(values) else None!r})")
