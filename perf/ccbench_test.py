"""Unit tests of perf/ccbench.py's pure functions (no root, no network)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ccbench  # noqa: E402


class CcbenchTest(unittest.TestCase):
    def test_jain(self):
        self.assertAlmostEqual(ccbench.jain([5, 5, 5, 5]), 1.0)
        self.assertAlmostEqual(ccbench.jain([10, 0]), 0.5)
        self.assertAlmostEqual(ccbench.jain([3, 1]), 16 / 20)
        self.assertIsNone(ccbench.jain([]))
        self.assertIsNone(ccbench.jain([0, 0]))

    def test_percentile(self):
        self.assertEqual(ccbench.percentile([3, 1, 2], 50), 2)
        self.assertEqual(ccbench.percentile([1, 2, 3, 4], 100), 4)
        self.assertAlmostEqual(ccbench.percentile([1, 2, 3, 4], 50), 2.5)
        self.assertEqual(ccbench.percentile([7], 95), 7)
        self.assertIsNone(ccbench.percentile([], 50))

    def test_link_figures(self):
        self.assertEqual(ccbench.bdp_bytes(20, 50), 125000)
        self.assertEqual(ccbench.queue_bytes(20, 50, 4), 500000)
        self.assertEqual(ccbench.queue_bytes(1, 1, 1), 4 * 1500)  # never under 4 packets
        self.assertAlmostEqual(ccbench.base_owd_ms(100, 10), 5.12)

    def test_parse_scheme(self):
        self.assertEqual(ccbench.parse_scheme("rudp-cubic"), ("rudp", "cubic"))
        self.assertEqual(ccbench.parse_scheme("tcp-bbr"), ("tcp", "bbr"))
        self.assertEqual(ccbench.parse_scheme("udt"), ("udt", ""))
        for bad in ("rudp-", "quic", "tcp"):
            with self.assertRaises(ValueError):
                ccbench.parse_scheme(bad)

    def test_table_and_progress(self):
        ok = {"workload": "bulk", "scheme": "tcp-cubic", "rate_mbit": 20, "rtt_ms": 50, "loss_pct": 1,
              "queue_bdp": 1, "status": "ok", "goodput_mbit": 19.1, "utilisation": 0.955, "owd_p95_ms": 50.5,
              "qdelay_p95_ms": 24.9, "retx_overhead": 0.01}
        skip = dict(ok, scheme="rudp-vegas", status="skipped: no controller 'vegas'")
        t = ccbench.format_table([ok, skip]).splitlines()
        self.assertEqual(len(t), 4)
        self.assertIn("19.10 Mb/s", t[2])
        self.assertIn("1.00%", t[2])
        self.assertTrue(t[3].endswith("skipped: no controller 'vegas'"))
        self.assertEqual(t[2].index("20mbit"), t[3].index("20mbit"))  # aligned
        self.assertEqual(ccbench.progress_line(12, 240, ok),
                         "[12/240] bulk tcp-cubic 20mbit 50ms 1% 1bdp ... 19.1 Mbit/s p95 50.5 ms")
        self.assertEqual(ccbench.csv_value([1, 2.5]), "1;2.500")


if __name__ == "__main__":
    unittest.main()
