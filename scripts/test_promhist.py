"""Unit tests of scripts/promhist.py (histogram parsing, delta and quantile math):
    python3 -m unittest discover -s scripts -p 'test_*.py'"""

import math
import unittest

import promhist

BEFORE = """# TYPE tern_request_latency_seconds histogram
tern_request_latency_seconds_bucket{shard="0",api="Produce",le="0.001"} 10
tern_request_latency_seconds_bucket{shard="0",api="Produce",le="0.005"} 12
tern_request_latency_seconds_bucket{shard="0",api="Produce",le="+Inf"} 12
tern_request_latency_seconds_count{shard="0",api="Produce"} 12
tern_request_latency_seconds_bucket{shard="1",api="Produce",le="0.001"} 5
tern_request_latency_seconds_bucket{shard="1",api="Produce",le="0.005"} 5
tern_request_latency_seconds_bucket{shard="1",api="Produce",le="+Inf"} 5
"""
AFTER = """tern_request_latency_seconds_bucket{shard="0",api="Produce",le="0.001"} 900
tern_request_latency_seconds_bucket{shard="0",api="Produce",le="0.005"} 1000
tern_request_latency_seconds_bucket{shard="0",api="Produce",le="+Inf"} 1001
tern_request_latency_seconds_bucket{shard="1",api="Produce",le="0.001"} 105
tern_request_latency_seconds_bucket{shard="1",api="Produce",le="0.005"} 105
tern_request_latency_seconds_bucket{shard="1",api="Produce",le="+Inf"} 105
tern_request_latency_seconds_bucket{shard="1",api="Fetch",le="0.001"} 3
tern_request_latency_seconds_bucket{shard="1",api="Fetch",le="0.005"} 4
tern_request_latency_seconds_bucket{shard="1",api="Fetch",le="+Inf"} 4
tern_request_queue_seconds_bucket{shard="1",api="Fetch",le="0.001"} 99
"""
FAMILY = "tern_request_latency_seconds"


class PromHistTest(unittest.TestCase):
    def test_parse_sums_shards_and_keeps_other_families_out(self):
        h = promhist.parse_buckets(AFTER, FAMILY, "api")
        self.assertEqual(h["Produce"], {0.001: 1005, 0.005: 1105, math.inf: 1106})
        self.assertEqual(h["Fetch"], {0.001: 3, 0.005: 4, math.inf: 4})

    def test_delta_subtracts_per_bucket_and_treats_new_groups_as_zero(self):
        d = promhist.delta(promhist.parse_buckets(AFTER, FAMILY, "api"),
                           promhist.parse_buckets(BEFORE, FAMILY, "api"))
        self.assertEqual(d["Produce"], {0.001: 990, 0.005: 1088, math.inf: 1089})
        self.assertEqual(d["Fetch"], {0.001: 3, 0.005: 4, math.inf: 4})
        self.assertEqual(promhist.count(d["Produce"]), 1089)

    def test_delta_rejects_a_counter_that_went_down(self):
        with self.assertRaises(ValueError):
            promhist.delta(promhist.parse_buckets(BEFORE, FAMILY, "api"),
                           promhist.parse_buckets(AFTER, FAMILY, "api"))

    def test_quantile_is_the_upper_bound_of_the_bucket_reaching_it(self):
        d = {0.001: 990, 0.005: 1088, math.inf: 1089}
        self.assertEqual(promhist.quantile(d, 0.5), 0.001)
        self.assertEqual(promhist.quantile(d, 0.909), 0.001)  # 990/1089 = 0.9091
        self.assertEqual(promhist.quantile(d, 0.99), 0.005)
        self.assertEqual(promhist.quantile(d, 0.9995), math.inf)

    def test_quantile_of_an_empty_histogram_is_none(self):
        self.assertIsNone(promhist.quantile({}, 0.99))
        self.assertIsNone(promhist.quantile({0.001: 0, math.inf: 0}, 0.99))

    def test_formatting(self):
        self.assertEqual(promhist.fmt_ms(0.00025), "≤0.25")
        self.assertEqual(promhist.fmt_ms(math.inf), ">max")
        self.assertEqual(promhist.fmt_ms(None), "")


if __name__ == "__main__":
    unittest.main()
