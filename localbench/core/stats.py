"""How much a statistic of n requests can say: one percentile rule for every table, summary and load sweep.

A std needs n >= 2 and a percentile pQ needs n >= 1 / (1 - Q/100) requests (p50: 2, p90: 10, p99: 100);
below that it is not a percentile (tables show the max of n, summaries NaN).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def min_n(q: float) -> int:
    """Requests a q-th percentile needs before it means more than the largest value seen."""
    return math.ceil(1 / (1 - q / 100) - 1e-9)


def quantile(values, q: float) -> float:
    """The q-th percentile of `values` where their number supports it (min_n), else NaN (summaries, sweeps)."""
    v = np.asarray([x for x in values if x is not None and x == x], dtype=float)
    return float(np.percentile(v, q)) if v.size and v.size >= min_n(q) else math.nan


def percentile(values, q: float):
    """The q-th percentile of `values`, or 'max of n: v' where n does not support it (None if empty)."""
    v = np.asarray([x for x in values if x is not None and x == x], dtype=float)
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
