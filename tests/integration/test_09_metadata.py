"""Metadata consistency across connections (beyond the 15 acceptance points).

librdkafka warns "reports different ClusterId ... a client must not be
simultaneously connected to multiple clusters" when this does not hold.
"""

import kwire


def _cluster_and_brokers(port):
    with kwire.Conn(port) as c:
        r = c.call(kwire.API_METADATA, 4, kwire.array([], kwire.string) + kwire.i8(0))
        r.i32()  # throttle
        brokers = r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string()))
        return r.string(), r.i32(), tuple(sorted(brokers))


def test_cluster_id_and_brokers_same_on_every_connection(broker):
    # Connections are spread over the shards; every one must describe the same cluster.
    seen = {_cluster_and_brokers(broker.port) for _ in range(16)}
    assert len(seen) == 1, f"metadata differs between connections (cluster_id, controller, brokers): {seen}"
    ((cluster_id, controller, brokers),) = seen
    assert cluster_id, "empty cluster id"
    assert brokers == ((brokers[0][0], "127.0.0.1", broker.port, None),), brokers
    assert controller == brokers[0][0]
