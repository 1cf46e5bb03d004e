"""Broker-side latency from Prometheus histograms: scrape a /metrics endpoint, subtract the
snapshot taken before a workload from the one taken after it, and read quantiles off the
difference.

Owns: parsing the text exposition format (only `_bucket` samples are needed), summing a
histogram's buckets over the label values we do not group by (Tern reports one histogram per
shard), the per-bucket delta, and the quantile rule. A quantile is reported as the upper bound
of the bucket in which the cumulative count first reaches it (what a bucketed histogram can
honestly say: "p99 <= 1 ms"); a quantile that falls in the +Inf bucket is reported as +Inf.
Used by scripts/compare; tests in scripts/test_promhist.py.
"""

import math
import re
import urllib.request

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_buckets(text, family, group_by):
    """{group value: {le: cumulative count}} for `family`'s buckets, summed over all other
    labels (shards). `le` is a float (math.inf for +Inf)."""
    out = {}
    want = family + "_bucket"
    for line in text.splitlines():
        if not line.startswith(want):
            continue
        m = _SAMPLE.match(line)
        if not m or m.group(1) != want:
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        if "le" not in labels:
            continue
        le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        key = labels.get(group_by, "")
        per = out.setdefault(key, {})
        per[le] = per.get(le, 0.0) + float(m.group(3))
    return out


def delta(after, before):
    """Per-group cumulative bucket counts of `after - before` (a group or bucket missing before
    counts as 0). A counter that went down means the broker restarted: raises ValueError."""
    out = {}
    for key, buckets in after.items():
        prev = before.get(key, {})
        d = {}
        for le, n in buckets.items():
            v = n - prev.get(le, 0.0)
            if v < 0:
                raise ValueError(f"histogram {key} le={le} went down ({prev.get(le)} -> {n})")
            d[le] = v
        out[key] = d
    return out


def quantile(cumulative, q):
    """Upper bound of the first bucket whose cumulative count reaches q of the total; None for
    an empty histogram."""
    if not cumulative:
        return None
    les = sorted(cumulative)
    total = cumulative[les[-1]]
    if total <= 0:
        return None
    rank = q * total
    for le in les:
        if cumulative[le] >= rank:
            return le
    return math.inf


def count(cumulative):
    return cumulative[max(cumulative)] if cumulative else 0


def scrape(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def fmt_ms(v):
    """A bucket bound in seconds as '<=X' ms text."""
    if v is None:
        return ""
    if math.isinf(v):
        return ">max"
    ms = v * 1000
    return f"≤{ms:g}"
