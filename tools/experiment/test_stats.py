"""Tests of stats.py against published values.

    python3 -m unittest discover -s tools/experiment -p 'test_*.py'
"""

import importlib.util
import os
import sys
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("stats", os.path.join(HERE, "stats.py"))
stats = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stats)


class StudentT(unittest.TestCase):
    def test_quantiles_are_the_tables(self):
        # Two-sided 95 % critical values (0.975 quantiles) from the t table.
        for df, t in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (10, 2.228),
                      (29, 2.045), (120, 1.980)]:
            self.assertAlmostEqual(stats.t_quantile(0.975, df), t, places=3)
        self.assertAlmostEqual(stats.t_quantile(0.5, 7), 0.0, places=6)

    def test_cdf_is_symmetric_and_known(self):
        # t = 2 with 10 degrees of freedom: two-sided p 0.07339.
        self.assertAlmostEqual(2 * (1 - stats.t_cdf(2.0, 10)), 0.07339, places=5)
        self.assertAlmostEqual(stats.t_cdf(-1.3, 5) + stats.t_cdf(1.3, 5), 1.0, places=12)
        # One degree of freedom is Cauchy: P(T <= 1) = 3/4.
        self.assertAlmostEqual(stats.t_cdf(1.0, 1), 0.75, places=12)


class PairedT(unittest.TestCase):
    def test_interval_and_p_value(self):
        diffs = [0.1, 0.3, 0.2, 0.4, 0.0]
        mean, (lo, hi), p = stats.paired_t(diffs)
        # mean 0.2, sd 0.1581, se 0.07071, t(4) 2.776: half-width 0.1963; t = 2.828.
        self.assertAlmostEqual(mean, 0.2)
        self.assertAlmostEqual(lo, 0.2 - 0.19632, places=4)
        self.assertAlmostEqual(hi, 0.2 + 0.19632, places=4)
        self.assertAlmostEqual(p, 0.04742, places=4)
        self.assertIsNone(stats.paired_t([1.0]))
        self.assertEqual(stats.paired_t([0.5, 0.5]), (0.5, (0.5, 0.5), 0.0))

    def test_equivalence_needs_the_whole_interval_inside_the_margin(self):
        self.assertTrue(stats.equivalent((-0.004, 0.009), 0.01))
        self.assertFalse(stats.equivalent((-0.013, 0.009), 0.01))


class Holm(unittest.TestCase):
    def test_step_down(self):
        # Holm (1979): p = 0.01, 0.04, 0.03, 0.005 -> 0.03, 0.06, 0.06, 0.02.
        adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
        for got, want in zip(adjusted, [0.03, 0.06, 0.06, 0.02]):
            self.assertAlmostEqual(got, want)
        self.assertEqual(stats.holm([0.6, 0.9]), [1.0, 1.0])
        self.assertEqual(stats.holm([]), [])


if __name__ == "__main__":
    unittest.main()
