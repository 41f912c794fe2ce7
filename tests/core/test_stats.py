"""The one percentile rule: a percentile only where n supports it, else the max of n (tables) or NaN (summaries)."""
import math

from localbench.core.stats import min_n, percentile, quantile


def test_percentiles_need_enough_requests():
    assert percentile([1.0], 50) == "max of 1: 1"
    assert percentile([1.0, 3.0], 50) == 2.0
    assert percentile(range(50), 99) == "max of 50: 49"
    assert percentile(range(100), 99) > 97


def test_summary_quantiles_follow_the_same_rule():
    assert [min_n(q) for q in (50, 90, 99)] == [2, 10, 100]
    assert math.isnan(quantile([1.0], 50)) and quantile([1.0, 3.0], 50) == 2.0
    assert math.isnan(quantile(range(64), 99)) and quantile(range(100), 99) > 97     # a 64-request sweep: no p99
