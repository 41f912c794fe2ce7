"""stats.stratified_ci: a bootstrap that resamples each stratum on its own (claims: a fitted exponent's interval,
the ratio of two ITL spreads)."""
import math

import numpy as np

from localbench.core.stats import stratified_ci


def test_each_stratum_is_resampled_on_its_own():
    sizes = set()
    lo, hi = stratified_ci([[1.0] * 3, [2.0] * 5], lambda s: sizes.add(tuple(map(len, s))) or 0.0, boot=50)
    assert sizes == {(3, 5)} and (lo, hi) == (0.0, 0.0)


def ratio(strata) -> float:
    return float(np.mean(strata[1]) / np.mean(strata[0]))


def test_interval_covers_the_ratio_and_is_seeded():
    rng = np.random.default_rng(3)
    a, b = list(rng.normal(10, 1, 40)), list(rng.normal(20, 1, 40))
    lo, hi = stratified_ci([a, b], ratio)
    assert lo < 2.0 < hi and hi - lo < 0.2
    assert stratified_ci([a, b], ratio) == (lo, hi)


def test_no_interval_below_three_items():
    assert all(math.isnan(x) for x in stratified_ci([[1.0, 2.0], [1.0, 2.0, 3.0]], lambda s: 0.0))
