"""Matched cells: what may be compared, and how much a statistic of n requests can say (DESIGN.md, fidelity).

Runtimes are compared only on identical (workload, prompt_tokens, max_tokens, cache_reuse, concurrency)
cells; every aggregate shows n, a std needs n >= 2 and a percentile pQ needs n >= 1 / (1 - Q/100)
requests (p50: 2, p90: 10, p99: 100), else it is shown as the max of n.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

MATCH = ["workload", "prompt_tokens", "max_tokens", "cache_reuse", "concurrency"]
WHO = ["runtime", "transport", "quant"]


def single_stream(rows: pd.DataFrame) -> pd.DataFrame:
    """Warm, successful single-stream requests (the population every single-stream table draws from)."""
    return rows[(rows["status"] == "ok") & (rows["phase"] == "warm") & (rows["concurrency"] == 1)]


def label(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """'a/b/c' labels from the given columns."""
    return frame[columns].astype(str).agg("/".join, axis=1)


def min_n(q: float) -> int:
    """Requests a q-th percentile needs before it means more than the largest value seen."""
    return math.ceil(1 / (1 - q / 100) - 1e-9)


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


def common(rows: pd.DataFrame, by: str = "runtime") -> pd.DataFrame:
    """The single-stream rows of the cells that every value of `by` present measured (matched cells)."""
    warm = single_stream(rows)
    if warm.empty:
        return warm
    who = warm[by].nunique()
    have = warm.groupby(MATCH)[by].nunique()
    keep = have[have == who].index
    return warm.set_index(MATCH).loc[keep].reset_index() if len(keep) else warm.iloc[0:0]


def cell_means(rows: pd.DataFrame, metric: str, by: str = "runtime") -> pd.DataFrame:
    """Per matched cell (rows) and `by` value (columns), the mean of `metric` over common cells."""
    matched = common(rows, by)
    if matched.empty:
        return pd.DataFrame()
    return matched.groupby(MATCH + [by])[metric].mean().unstack(by)


def reference_cell(rows: pd.DataFrame) -> dict | None:
    """The cold-cache single-stream cell the most runtime/transport/quant combinations measured (unique
    prompts and shorter prompts first on ties): what one-number-per-runtime figures and metrics show."""
    warm = single_stream(rows)
    warm = warm[~warm["cache_reuse"].astype(bool)]
    if warm.empty:
        return None
    counts = warm.assign(who=label(warm, WHO)).groupby(MATCH)["who"].nunique().reset_index()
    counts["rank"] = list(zip(-counts["who"], counts["workload"] != "unique", counts["prompt_tokens"]))
    return counts.sort_values("rank").iloc[0][MATCH].to_dict()


def in_cell(rows: pd.DataFrame, cell: dict) -> pd.DataFrame:
    """The single-stream rows of one cell."""
    warm = single_stream(rows)
    mask = pd.Series(True, index=warm.index)
    for key, value in cell.items():
        mask &= warm[key] == value
    return warm[mask]
