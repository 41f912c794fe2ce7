"""Adaptive trials: which trials of which cells a session runs in each round, and when a cell stops.

The idea is MLPerf LoadGen's early stopping (loadgen/early_stopping.cc): the number of values beyond a percentile
is binomial, so an order statistic bounds the percentile at a chosen confidence from the values seen so far, and a
run stops once that bound is good enough. Here the statistic is the median: a cell runs at least
`workload.min_trials` trials, then more until the 95 % intervals of its median decode tok/s and median TTFT
(localbench.core.stats.median_ci: order statistics, or a bootstrap over the windows the trials ran in) are within
±`target_rel_ci` of the medians, or `max_trials` were run, or the cell spent `cell_time_cap_s` seconds of requests.
Trials are spread over at least `rounds` rounds: a session is loaded once per round and the sessions of a stage
alternate (A B … then … B A), so a cell's interval includes the window-to-window spread that back-to-back trials
hide. Trials in a drift-flagged window do not count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from localbench.core.stats import median_ci
from localbench.measure.plan import Cell

STOP_REASONS = ("target interval", "max trials", "time cap", "planned trials", "failed")


@dataclass(frozen=True)
class Rule:
    """The stopping rule's settings (workload.*)."""
    min_trials: int
    max_trials: int
    target_rel_ci: float
    cell_time_cap_s: float
    rounds: int

    @classmethod
    def of(cls, wl: dict) -> "Rule":
        return cls(int(wl["min_trials"]), int(wl["max_trials"]), float(wl["target_rel_ci"]),
                   float(wl["cell_time_cap_s"]), int(wl["rounds"]))

    @property
    def per_round(self) -> int:
        """Trials a cell runs per round: the minimum spread over `rounds`."""
        return max(1, math.ceil(self.min_trials / self.rounds))


def spent_s(rows: list[dict]) -> float:
    """Seconds of requests a cell spent outside drift-flagged windows (what its time cap counts)."""
    return sum(float(r.get("e2e_s") or 0) for r in rows if not r.get("drift_flag"))


def stop_reason(rule: Rule, fixed: bool, planned: int, rows: list[dict]) -> str | None:
    """Why a cell (its rows in this session so far) needs no more trials, or None. `planned`: its candidate
    trials (fixed cells run all of them)."""
    tried = {r["trial"] for r in rows}
    valid = [r for r in rows if not r.get("drift_flag")]
    ok = [r for r in valid if r.get("status") == "ok"]
    if len(tried) >= planned:
        return "planned trials" if fixed else "max trials"
    if rows and not any(r.get("status") == "ok" for r in rows) and len(tried) >= rule.per_round:
        return "failed"
    if spent_s(rows) >= rule.cell_time_cap_s:
        return "time cap"
    if fixed:
        return None
    trials_ok = {r["trial"] for r in ok}
    if len(trials_ok) < rule.min_trials:
        return None
    windows = [r.get("window") for r in ok]
    for metric in ("decode_tps", "ttft_s"):
        est = median_ci([r.get(metric) for r in ok], windows)
        if not est.rel_half_width <= rule.target_rel_ci:
            return None
    return "target interval"


def next_trials(rule: Rule, cells: list[Cell], rows: list[dict], done: set[int]) -> list[int]:
    """The next `per_round` trial numbers of one cell not run yet (empty once it stops)."""
    fixed = cells[0].fixed
    planned = sorted({c.trial for c in cells})
    if stop_reason(rule, fixed, len(planned), rows):
        return []
    return [t for t in planned if t not in done][:rule.per_round]
