"""partition.metadata (the file tying a partition directory to its topic id) never costs data.

An empty, truncated or garbage file (what a power cut after a non-atomic write leaves) is
rebuilt from the directory's name and the cluster metadata, keeping every record; a file that
names a topic id the cluster does not know (a deleted topic re-created under the same name)
moves the old directory aside instead of deleting it; a file naming another live topic's id
stops the broker with a message naming the file.
"""

import re
import uuid

import pytest

import kclients as kc

METADATA = "partition.metadata"


def _produce(bootstrap, topic, values_by_partition):
    d = kc.Deliveries()
    p = kc.producer(bootstrap, acks="all")
    for q, values in values_by_partition.items():
        for v in values:
            kc.produce(p, topic, v, d, partition=q)
    kc.flush(p)
    d.assert_no_errors()
    assert len(d.acked) == sum(len(v) for v in values_by_partition.values())


def _topic_id(path):
    text = path.read_text()
    m = re.fullmatch(r"version: 0\ntopic_id: (\S+)\n", text)
    assert m, f"{path}: unexpected content {text!r}"
    return m.group(1)


def _values(bootstrap, topic, partitions):
    recs, marks = kc.consume_all(bootstrap, topic, partitions)
    kc.assert_contiguous(recs, marks)
    return {q: [r.value for r in recs[q]] for q in partitions}


CORRUPTIONS = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: b"\x00\xff not a partition.metadata file \x17\n",
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_unreadable_partition_metadata_is_rebuilt_and_keeps_the_data(broker, how):
    topic = f"pm-{how}"
    parts = 2
    kc.create_topic(broker.bootstrap, topic, parts)
    values = {q: [f"{how}-{q}-{i}".encode() for i in range(300)] for q in range(parts)}
    _produce(broker.bootstrap, topic, values)
    files = [broker.partition_dir(topic, q) / METADATA for q in range(parts)]
    ids = {_topic_id(f) for f in files}
    assert len(ids) == 1, ids
    good = files[0].read_bytes()

    broker.stop()
    for f in files:
        f.write_bytes(CORRUPTIONS[how](good))
    broker.start()

    kc.wait_for_topic(broker.bootstrap, topic, parts)
    assert _values(broker.bootstrap, topic, range(parts)) == values
    for f in files:
        assert f.read_bytes() == good, f"{f} was not rebuilt"
        assert str(f) in broker.stderr_text(), f"no log line names {f}"
    # The rebuilt files are good: a further restart changes nothing.
    broker.stop()
    broker.start()
    assert _values(broker.bootstrap, topic, range(parts)) == values


def test_directory_of_an_unknown_topic_id_is_moved_aside_not_deleted(broker):
    """The legitimate case of the old wipe: the directory of a deleted incarnation survived."""
    topic = "pm-stale"
    kc.create_topic(broker.bootstrap, topic, 1)
    old = [f"old-{i}".encode() for i in range(50)]
    _produce(broker.bootstrap, topic, {0: old})
    pdir = broker.partition_dir(topic, 0)
    live_id = _topic_id(pdir / METADATA)
    broker.stop()

    deleted_id = str(uuid.uuid4())
    (pdir / METADATA).write_text(f"version: 0\ntopic_id: {deleted_id}\n")
    segments = {p.name: p.read_bytes() for p in pdir.iterdir() if p.suffix == ".log"}
    assert segments, f"no segment in {pdir}"
    broker.start()

    kc.wait_for_topic(broker.bootstrap, topic, 1)
    # The live topic starts empty: the records belonged to the other topic id...
    assert kc.watermarks(broker.bootstrap, topic, 0) == (0, 0)
    assert _topic_id(pdir / METADATA) == live_id
    # ...and they are kept, aside, under a name no partition directory can have.
    aside = [d for d in broker.log_dir.iterdir() if d.name.startswith(f"{topic}-0.")]
    assert len(aside) == 1, sorted(d.name for d in broker.log_dir.iterdir())
    assert aside[0].name.endswith("-stray"), aside[0].name
    assert _topic_id(aside[0] / METADATA) == deleted_id
    for name, data in segments.items():
        assert (aside[0] / name).read_bytes()[: len(data)] == data
    assert str(aside[0]) in broker.stderr_text()
    new = [f"new-{i}".encode() for i in range(5)]
    _produce(broker.bootstrap, topic, {0: new})
    assert _values(broker.bootstrap, topic, [0]) == {0: new}


def test_partition_metadata_naming_another_live_topic_refuses_to_start(broker):
    kc.create_topic(broker.bootstrap, "pm-a", 1)
    kc.create_topic(broker.bootstrap, "pm-b", 1)
    values = [f"b-{i}".encode() for i in range(40)]
    _produce(broker.bootstrap, "pm-b", {0: values})
    a_file = broker.partition_dir("pm-a", 0) / METADATA
    b_file = broker.partition_dir("pm-b", 0) / METADATA
    b_good = b_file.read_bytes()
    broker.stop()

    b_file.write_bytes(a_file.read_bytes())
    before = {p.name: p.read_bytes() for p in b_file.parent.iterdir()}
    broker.start(wait=False)
    rc = broker.proc.wait(timeout=30)
    broker._closed(rc)
    assert rc != 0, "the broker started with a partition.metadata naming another live topic"
    assert str(b_file) in broker.stderr_text()
    after = {p.name: p.read_bytes() for p in b_file.parent.iterdir()}
    assert after == before, "the refused directory was changed"

    b_file.write_bytes(b_good)
    broker.start()
    assert _values(broker.bootstrap, "pm-b", [0]) == {0: values}
