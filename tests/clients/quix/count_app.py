"""A Quix Streams stateful app for test_14: counts records per key of the input topic in a
RocksDB state store (backed by a compacted changelog topic that Quix Streams creates) and writes
each key's running count to the output topic.  Runs until it has processed --count records (or
--timeout seconds pass without input), then exits.  Run with the .venv-quix interpreter:

    .venv-quix/bin/python tests/clients/quix/count_app.py --broker 127.0.0.1:9092 \
        --input words --output counts --group g --state-dir /tmp/state --count 100
"""

import argparse
import logging

from quixstreams import Application


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    # Commit (and so write the changelog) every N records: many versions per key to compact.
    ap.add_argument("--commit-every", type=int, default=10)
    args = ap.parse_args()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_every=args.commit_every,
        state_dir=args.state_dir,
        loglevel=logging.INFO,
    )
    words = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    counts = app.topic(args.output, key_serializer="str", value_serializer="json")

    def count(value, key, timestamp, headers, state):
        n = state.get("count", 0) + 1
        state.set("count", n)
        return {"key": key, "count": n}

    sdf = app.dataframe(words)
    sdf = sdf.apply(count, stateful=True, metadata=True)
    sdf.to_topic(counts)
    app.run(count=args.count, timeout=args.timeout)


if __name__ == "__main__":
    main()
