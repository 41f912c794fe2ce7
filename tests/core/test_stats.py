"""The one percentile rule: a percentile only where n supports it, else the max of n (tables) or NaN (summaries)."""
import math

import numpy as np

from localbench.core.stats import min_n, order_ci, percentile, quantile


def test_percentiles_need_enough_requests():
    assert percentile([1.0], 50) == "max of 1: 1"
    assert percentile([1.0, 3.0], 50) == 2.0
    assert percentile(range(50), 99) == "max of 50: 49"
    assert percentile(range(100), 99) > 97


def test_summary_quantiles_follow_the_same_rule():
    assert [min_n(q) for q in (50, 90, 99)] == [2, 10, 100]
    assert math.isnan(quantile([1.0], 50)) and quantile([1.0, 3.0], 50) == 2.0
    assert math.isnan(quantile(range(64), 99)) and quantile(range(100), 99) > 97     # a 64-request sweep: no p99


def test_order_statistic_interval_holds_for_thousands_of_values():
    """The binomial weights are computed in log space: a load sweep's thousands of ITL values get an interval
    (math.comb's float overflowed past ~1,030 values), and it brackets the median tightly."""
    v = np.random.default_rng(0).normal(10, 1, 5000)
    lo, hi = order_ci(v)
    assert lo < np.median(v) < hi and hi - lo < 0.1
    assert order_ci(np.arange(1, 7)) == (1.0, 6.0)          # n = 6: the extreme order statistics
    assert all(math.isnan(x) for x in order_ci(np.arange(1, 6)))   # n = 5 cannot reach 95 %
