"""Cold reads (fetches served from segment files by sendfile, not from the tail cache) under
tight per-shard bounds: readahead in flight and cold sends in flight far below one response,
so every cold fetch waits for room and cuts its readahead. Every record must still come back
whole and in order, to two consumers reading the same partitions at once, and a consumer at
the tail must keep being served beside them."""

import os
import threading

import kclients as kc


def test_cold_reads_under_tight_bounds(broker_factory):
    b = broker_factory("--tail-cache-bytes", "1048576",
                       "--fetch-readahead-inflight-bytes", "65536",
                       "--fetch-cold-inflight-bytes", "4096",
                       "--fetch-readahead-bytes", "1048576")
    topic = "cold"
    kc.create_topic(b.bootstrap, topic, 2)
    values = {p: [os.urandom(2000) + bytes([p, i % 256]) for i in range(3000)] for p in (0, 1)}
    d = kc.Deliveries()
    prod = kc.producer(b.bootstrap, acks="all", **{"linger.ms": 5})
    for i in range(3000):
        for p in (0, 1):
            kc.produce(prod, topic, values[p][i], d, partition=p)
    kc.flush(prod)
    d.assert_no_errors()

    # 12 MB in 2 partitions against a 1 MiB tail cache per shard: most of it is cold.
    results = [None, None]

    def replay(k):
        results[k] = kc.consume_range(b.bootstrap, topic, {0: (0, 3000), 1: (0, 3000)},
                                      **{"max.partition.fetch.bytes": 262144})

    threads = [threading.Thread(target=replay, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    # A record produced now is read at the tail while the replays run.
    kc.produce(prod, topic, b"tail", d, partition=0)
    kc.flush(prod)
    d.assert_no_errors()
    tail = kc.consume_range(b.bootstrap, topic, {0: (3000, 3001)})[0]
    assert [r.value for r in tail] == [b"tail"]
    for t in threads:
        t.join()
    for res in results:
        for p in (0, 1):
            assert [r.offset for r in res[p]] == list(range(3000))
            assert [r.value for r in res[p]] == values[p]
