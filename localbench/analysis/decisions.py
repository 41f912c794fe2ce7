"""A claim as statistical decisions (DESIGN.md: claims are units; uncertainty): each Decision is an effect at one
matched cell with its 95 % interval (localbench.core.stats), read `supported` or `contradicted` only where the
interval excludes the threshold and every side has the claim's minimum evidence, else `inconclusive` with the n
that would decide it. A claim's decisions combine into its Finding: supported only where every one is,
contradicted where any one is, else inconclusive. Runtimes are compared per matched cell pair: one MATCH cell of
one transport and one precision class (localbench.analysis.cells.precision), artifact against artifact.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from localbench.analysis.cells import MATCH, WHO, anchors, label, precision, single_stream
from localbench.core.stats import decide, n_needed, ratio_ci

MIN_N = 5                 # requests per side per cell before a decision (the adaptive trials' min_trials)
SAME_CELL = MATCH + ["transport", "precision"]     # runtimes compared: one cell, one transport, one precision class


@dataclass(frozen=True)
class Finding:
    """A claim's outcome: verdict, its effect with the 95 % interval (None without one), the evidence, and the
    anchors of the cells its decisions rest on (localbench.analysis.cells.cell_anchor)."""
    verdict: str
    effect: str | None
    evidence: str
    cells: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """One decision inside a claim: an effect (`what`) at one cell (`where`) with its 95 % interval, the n it rests
    on as printed ("6/6": per side), the threshold it was decided against, its verdict, the n that would decide it
    (0: decided, or no estimate), the minimum evidence it lacks and the anchors of the cells it rests on."""
    what: str
    where: str
    value: float
    lo: float
    hi: float
    n: str
    threshold: float
    verdict: str
    need: int = 0
    missing: str = ""
    cells: tuple[str, ...] = ()

    def text(self) -> str:
        ci = f"[{self.lo:.3g}, {self.hi:.3g}]" if self.lo == self.lo else "[–]"
        return f"{self.what}: {self.value:.3g} {ci} (n {self.n})" + (f" at {self.where}" if self.where else "")


def n_to_decide(lo: float, hi: float, value: float, threshold: float, n: int) -> int:
    """n (per side) at which an interval as wide as [lo, hi] at n would shrink off the threshold (stats.n_needed;
    more than n, since the interval at n does not exclude it); 0: no estimate (no interval, value on the threshold)."""
    if not all(map(math.isfinite, (lo, hi, value))) or value == threshold or not value:
        return 0
    return max(n_needed((hi - lo) / 2 / abs(value), n, abs(value - threshold) / abs(value)), n + 1)


def decided(what: str, where: str, value: float, lo: float, hi: float, n: tuple[int, ...], threshold: float,
            above: str, below: str, min_n: int = MIN_N) -> Decision:
    """An effect decided against `threshold` by its interval (stats.decide): `above` or `below` where the interval
    lies wholly on that side, else inconclusive; inconclusive too where a side has fewer than min_n values."""
    shown, fewest = "/".join(map(str, n)), min(n)
    estimate = n_to_decide(lo, hi, value, threshold, fewest)
    if fewest < min_n:
        return Decision(what, where, value, lo, hi, shown, threshold, "inconclusive", max(min_n, estimate),
                        f"n {shown} < {min_n}")
    verdict = decide(lo, hi, threshold, above, below)
    return Decision(what, where, value, lo, hi, shown, threshold, verdict, estimate if verdict == "inconclusive" else 0)


def window_ids(frame: pd.DataFrame) -> pd.Series | None:
    """The rows' measurement windows (the bootstrap's clusters), None where the rows carry none."""
    return frame["window"].fillna("").astype(str) if "window" in frame else None


def ratio_decision(a: pd.DataFrame, b: pd.DataFrame, metric: str, what: str, where: str, threshold: float, above: str,
               below: str, min_n: int = MIN_N) -> Decision:
    """median(b[metric]) / median(a[metric]) with its 95 % interval (stats.ratio_ci, windows as clusters), decided."""
    r = ratio_ci(a[metric], b[metric], window_ids(a), window_ids(b))
    return replace(decided(what, where, r.ratio, r.lo, r.hi, (r.n_a, r.n_b), threshold, above, below, min_n),
                   cells=anchors(a, b))


def cell_text(cell: dict) -> str:
    """'unique 1024→32' (', reuse' where the cell reuses a cache)."""
    reuse = ", reuse" if cell.get("cache_reuse") else ""
    return f"{cell['workload']} {int(cell['prompt_tokens'])}→{int(cell['max_tokens'])}{reuse}"


def who_served(frame: pd.DataFrame) -> str:
    """'runtime/transport/quant' of rows that one artifact served."""
    return label(frame.iloc[:1], WHO).iloc[0]


def matched_pairs(rows: pd.DataFrame, keys: list[str], side_a: Callable, side_b: Callable):
    """Matched artifact pairs: within each group of the single-stream rows on `keys` (MATCH plus e.g. transport and
    precision class), every artifact (runtime/transport/quant) where side_a(frame) against every one where
    side_b(frame); yields (cell, A rows, B rows). Rows of a quant of unknown precision class match nothing."""
    warm = single_stream(rows)
    warm = warm.assign(precision=warm["quant"].map(precision))
    for key, g in warm.groupby(keys, sort=True):
        cell = dict(zip(keys, key))
        for _, a in g[side_a(g)].groupby(WHO):
            for _, b in g[side_b(g)].groupby(WHO):
                yield cell, a, b


def ratio_per_pair(rows: pd.DataFrame, keys: list[str], side_a: Callable, side_b: Callable, metric: str, name: str,
                   threshold: float, above: str, below: str) -> list[Decision]:
    """The ratio B ÷ A of median `metric` decided per matched cell pair (matched_pairs): one Decision per cell and
    artifact pair, named 'B ÷ A <name>'."""
    return [ratio_decision(a, b, metric, f"{who_served(b)} ÷ {who_served(a)} {name}", cell_text(cell), threshold,
                           above, below) for cell, a, b in matched_pairs(rows, keys, side_a, side_b)]


RANK = {"contradicted": 0, "inconclusive": 1, "supported": 2}


def least_favourable(decisions: list[Decision]) -> Decision:
    """The decision furthest from supporting the claim: contradicted first, then inconclusive (without an interval
    first), then the supported one whose interval comes closest to its threshold."""
    def margin(t: Decision) -> float:
        return min(abs(t.lo - t.threshold), abs(t.hi - t.threshold)) if t.lo == t.lo else -1.0
    return min(decisions, key=lambda t: (RANK[t.verdict], margin(t)))


def combine(decisions: list[Decision], unit: str, note: str = "") -> Finding:
    """The claim's Finding from its decisions (`unit`: what one decision is, e.g. "cell pair"), each decided on
    its own: supported only where every one is, contradicted where any one is, else inconclusive with what is
    missing and the n that would decide it. The effect: per compared pair, its least favourable cell (of how many)."""
    verdicts = [t.verdict for t in decisions]
    units = unit + ("s" if len(decisions) != 1 else "")
    if "contradicted" in verdicts:
        verdict = "contradicted"
    elif all(v == "supported" for v in verdicts):
        verdict = "supported"
    else:
        thin = [t for t in decisions if t.missing]
        needs = [t.need for t in decisions if t.verdict == "inconclusive" and t.need]
        parts = ([f"{len(thin)} of {len(decisions)} {units} below minimum evidence"] if thin else []) + \
                ([f"needs n ≈ {max(needs)}"] if needs else [])
        verdict = "inconclusive" + (f" ({'; '.join(parts)})" if parts else "")
    by_what: dict[str, list[Decision]] = {}
    for t in decisions:
        by_what.setdefault(t.what, []).append(t)
    effect = "; ".join(least_favourable(ts).text() + (f", least favourable of {len(ts)} {unit}s" if len(ts) > 1 else "")
                       for ts in by_what.values())
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in RANK if v in verdicts)
    missing = sorted({t.missing for t in decisions if t.missing})
    evidence = (f"{len(decisions)} {units} ({counts}), each decided on its own: supported only if every one is, "
                f"contradicted if any one is" + (f"; below minimum evidence: {', '.join(missing)}" if missing else "")
                + (f"; {note}" if note else ""))
    return Finding(verdict, effect, evidence, tuple(dict.fromkeys(c for t in decisions for c in t.cells)))


def measured_artifacts(rows: pd.DataFrame) -> str:
    """The artifacts (runtime/transport/quant) the single-stream rows hold."""
    return ", ".join(sorted(label(single_stream(rows), WHO).unique())) or "none"
