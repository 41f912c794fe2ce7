"""How much a statistic of n requests can say: every interval, percentile rule and A/B decision in one place.

- A percentile pQ needs n >= 1 / (1 - Q/100) values (p50: 2, p90: 10, p99: 100); below that it is not a
  percentile (tables show the max of n, summaries NaN).
- A median's 95 % interval is distribution-free: the order statistics (x_(k), x_(n+1-k)) whose binomial(n, 1/2)
  coverage is at least 95 % (n >= 6; at n = 5 even the range covers only 93.75 %).
- Where a cell's values come from several measurement windows (a cell's trials are spread over the run, so a
  window's own speed is a source of variance), intervals are a two-level bootstrap: resample the windows, then the
  values within each (a cell measured in one window falls back to the order-statistic interval).
- A/B: the ratio of two medians with a bootstrap interval; a verdict only where the interval excludes the
  threshold, else "inconclusive".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

LEVEL = 0.95
BOOT = 2000            # bootstrap resamples
SEED = 0               # every bootstrap is seeded: the same data gives the same interval


def clean(values) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and x == x], dtype=float)


def min_n(q: float) -> int:
    """Requests a q-th percentile needs before it means more than the largest value seen."""
    return math.ceil(1 / (1 - q / 100) - 1e-9)


def quantile(values, q: float) -> float:
    """The q-th percentile of `values` where their number supports it (min_n), else NaN (summaries, sweeps)."""
    v = clean(values)
    return float(np.percentile(v, q)) if v.size and v.size >= min_n(q) else math.nan


def percentile(values, q: float):
    """The q-th percentile of `values`, or 'max of n: v' where n does not support it (None if empty)."""
    v = clean(values)
    if not v.size:
        return None
    if v.size < min_n(q):
        return f"max of {v.size}: {v.max():.3g}"
    return float(np.percentile(v, q))


def mean_std(values) -> str:
    """'mean ± std' (std only where n >= 2)."""
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return "–"
    return f"{v.mean():.3g} ± {v.std(ddof=1):.2g}" if len(v) > 1 else f"{v.mean():.3g}"


def _binom_pmf(n: int, i: int, p: float) -> float:
    """P(B = i) for B ~ binomial(n, p), in log space (math.comb overflows a float past n ~ 1030)."""
    if p in (0.0, 1.0):
        return float(i == (n if p == 1.0 else 0))
    return math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                    + i * math.log(p) + (n - i) * math.log1p(-p))


def order_ci(values, q: float = 50, level: float = LEVEL) -> tuple[float, float]:
    """Distribution-free interval of the q-th percentile: the narrowest symmetric pair of order statistics whose
    binomial(n, q/100) coverage is >= level; (NaN, NaN) where n cannot reach it."""
    v = np.sort(clean(values))
    n, p = v.size, q / 100
    if not n:
        return math.nan, math.nan
    tail = (1 - level) / 2
    cdf = np.cumsum([_binom_pmf(n, i, p) for i in range(n + 1)])   # P(B <= i)
    lo = int(np.searchsorted(cdf, tail, side="right"))    # largest lo with P(B <= lo - 1) <= tail
    hi = next((h for h in range(1, n + 1) if 1 - cdf[h - 1] <= tail), n + 1)   # smallest hi: P(B >= hi) <= tail
    if lo < 1 or hi > n:
        return math.nan, math.nan
    return float(v[lo - 1]), float(v[hi - 1])


def _boot_medians(clusters: list[np.ndarray], rng: np.random.Generator, boot: int) -> np.ndarray:
    """Medians of `boot` two-level resamples: windows with replacement, then values within each window."""
    k = len(clusters)
    out = np.empty(boot)
    for b in range(boot):
        picked = rng.integers(0, k, k)
        out[b] = np.median(np.concatenate([c[rng.integers(0, c.size, c.size)] for c in (clusters[i] for i in picked)]))
    return out


def groups_of(values, windows=None) -> list[np.ndarray]:
    """Values split by window (one group without windows; rows without a window form one group); NaN values
    dropped."""
    frame = pd.DataFrame({"v": pd.to_numeric(pd.Series(list(values)), errors="coerce"),
                          "w": list(windows) if windows is not None else 0}).dropna(subset=["v"])
    return [g["v"].to_numpy(float) for _, g in frame.groupby("w", sort=True, dropna=False) if len(g)]


@dataclass(frozen=True)
class Estimate:
    """A median with its 95 % interval and how many values (and windows) it rests on."""
    value: float
    lo: float
    hi: float
    n: int
    windows: int = 1

    @property
    def rel_half_width(self) -> float:
        """Half the interval's width over the median (NaN without an interval)."""
        return (self.hi - self.lo) / 2 / abs(self.value) if self.value and self.lo == self.lo else math.nan

    def text(self, digits: int = 3) -> str:
        """'median [lo, hi] (n)'; '[–]' where n cannot support an interval."""
        if not self.n:
            return "–"
        ci = f"[{self.lo:.{digits}g}, {self.hi:.{digits}g}]" if self.lo == self.lo else "[–]"
        return f"{self.value:.{digits}g} {ci} (n={self.n})"


def median_ci(values, windows=None, level: float = LEVEL) -> Estimate:
    """The median with its interval: order statistics within one window, a two-level bootstrap over several."""
    groups = groups_of(values, windows)
    v = np.concatenate(groups) if groups else np.array([])
    if not v.size:
        return Estimate(math.nan, math.nan, math.nan, 0, 0)
    lo, hi = order_ci(v, 50, level)
    if len(groups) > 1 and lo == lo:
        meds = _boot_medians(groups, np.random.default_rng(SEED), BOOT)
        blo, bhi = np.quantile(meds, [(1 - level) / 2, (1 + level) / 2])
        lo, hi = min(lo, float(blo)), max(hi, float(bhi))     # never narrower than the order-statistic interval
    return Estimate(float(np.median(v)), lo, hi, int(v.size), len(groups))


def bootstrap_ci(values, stat=np.mean, level: float = LEVEL, boot: int = BOOT) -> tuple[float, float]:
    """Percentile bootstrap interval of stat(values) (units: e.g. scored windows); NaN below 2 values."""
    v = clean(values)
    if v.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(SEED)
    draws = np.array([stat(v[rng.integers(0, v.size, v.size)]) for _ in range(boot)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def normal_ci(value: float, se: float, level: float = LEVEL) -> tuple[float, float]:
    """value ± z * se (a normal interval from a reported standard error, e.g. llama-perplexity's ± values)."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    return value - z * se, value + z * se

@dataclass(frozen=True)
class Ratio:
    """median(B) / median(A) with its interval and the n of each side."""
    ratio: float
    lo: float
    hi: float
    n_a: int
    n_b: int


def ratio_ci(a, b, windows_a=None, windows_b=None, level: float = LEVEL, boot: int = BOOT) -> Ratio:
    """median(b) / median(a), each side resampled on its own (two-level over windows where given); the interval
    is the bootstrap's percentiles. NaN interval where either side has fewer than 3 values."""
    ga, gb = groups_of(a, windows_a), groups_of(b, windows_b)
    va = np.concatenate(ga) if ga else np.array([])
    vb = np.concatenate(gb) if gb else np.array([])
    if not va.size or not vb.size:
        return Ratio(math.nan, math.nan, math.nan, int(va.size), int(vb.size))
    r = float(np.median(vb) / np.median(va))
    if va.size < 3 or vb.size < 3:
        return Ratio(r, math.nan, math.nan, int(va.size), int(vb.size))
    rng = np.random.default_rng(SEED)
    draws = _boot_medians(gb, rng, boot) / _boot_medians(ga, rng, boot)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Ratio(r, float(lo), float(hi), int(va.size), int(vb.size))


def decide(lo: float, hi: float, threshold: float, above: str, below: str) -> str:
    """`above` where the interval lies wholly above the threshold, `below` wholly below, else 'inconclusive'
    (also without an interval)."""
    if not (lo == lo and hi == hi):
        return "inconclusive"
    if lo > threshold:
        return above
    if hi < threshold:
        return below
    return "inconclusive"


def n_needed(estimate_rel_half_width: float, n: int, target: float) -> int:
    """Values a width of `target` (relative half-width) would take, from one at n (widths shrink as 1/sqrt(n))."""
    if not (estimate_rel_half_width == estimate_rel_half_width) or not n:
        return 0
    return int(math.ceil(n * (estimate_rel_half_width / target) ** 2))


def stratified_ci(strata, stat, level: float = LEVEL, boot: int = BOOT) -> tuple[float, float]:
    """Percentile bootstrap interval of stat(strata) where each stratum (a sequence of items: values, or whole
    requests' value lists) is resampled with replacement on its own, e.g. the requests at each prompt length of a
    fitted exponent, or the two sides of a comparison of a statistic other than the median. NaN where a stratum has
    fewer than 3 items."""
    strata = [list(s) for s in strata]
    if not strata or min(len(s) for s in strata) < 3:
        return math.nan, math.nan
    rng = np.random.default_rng(SEED)
    draws = np.array([stat([[s[i] for i in rng.integers(0, len(s), len(s))] for s in strata]) for _ in range(boot)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
