"""Compare two runs: per matched cell, the ratio B/A of median decode tok/s and median TTFT, with its 95 % interval
and a verdict (faster / slower / no detectable difference).

    python -m localbench.ab A B [--a-where KEY=VALUE ...] [--b-where KEY=VALUE ...] [--out DIR] [--metric M ...]

A and B are each a result bundle folder (`results/<host>/`, localbench.analysis.bundles) or a git revision or DVC
experiment name (`dvc exp list`): that revision's data/requests.parquet, read through dvc.api from the DVC cache.
`--a-where`/`--b-where KEY=VALUE` keep only the rows of that side whose column KEY reads VALUE (repeat for several
keys); a key filtered on either side leaves the matched-cell key, so one bundle can be compared with itself:

    python -m localbench.ab results/h results/h --a-where quant=F16 --b-where quant=Q4_K_M   # F16 -> Q4_K_M
    python -m localbench.ab exp-run1 exp-run2                                                  # an A/A check

Cells match on localbench.analysis.cells.HOST_CELL (model, runtime, transport, format, quant, workload,
prompt_tokens, max_tokens, cache_reuse, phase, concurrency) less the filtered keys, over warm single-stream ok
requests (cells.single_stream). Rows with drift_flag True are left out and counted; a cell one side lacks is listed
as unmatched, not compared. Per cell and metric: stats.ratio_ci over each side's measurement windows (clustered
bootstrap) and stats.decide on 1: decode above 1 / TTFT below 1 is "faster", the reverse "slower", an interval
holding 1 "no detectable difference"; a side with fewer than 3 values has no interval: "insufficient n".

Writes DIR/ab.md (the table, also printed) and DIR/ab.json
`{"a", "b", "cells": [{"cell", "metric", "ratio", "ci", "n", "verdict"}], "summary"}`; DIR defaults to
results/ab/<a-label>_vs_<b-label>/. A source that cannot be read, an unknown filter key or value, no matched cell,
or a key filtered on one side only while the other side's cells hold several of its values (they would be pooled)
is one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from localbench.analysis.bundles import RESULTS, load_bundle
from localbench.analysis.cells import HOST_CELL, single_stream, undrifted
from localbench.core import markdown, stats
from localbench.core.schema import REQUEST_SCHEMA

HIGHER_IS_BETTER = {"decode_tps": True, "ttft_s": False}      # the metrics compared, and which way is faster
NO_DIFFERENCE = "no detectable difference"
INSUFFICIENT = "insufficient n"
VERDICTS = ("faster", "slower", NO_DIFFERENCE, INSUFFICIENT)
REQUESTS = "data/requests.parquet"                             # what a revision's run wrote


class ABError(Exception):
    """A problem with the command line or its inputs: one line for the user, exit code 2."""


@dataclass
class Side:
    """One result set to compare: its request rows, where they came from, and the filters applied."""
    name: str                                                  # "A" | "B": which argument it is
    label: str
    source: str
    kind: str                                                  # "bundle" | "revision"
    rows: pd.DataFrame
    where: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"label": self.label, "source": self.source, "kind": self.kind, "where": self.where}


def _revision_rows(rev: str, name: str) -> pd.DataFrame:
    """data/requests.parquet as committed at a git revision or DVC experiment (read from the DVC cache)."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        with dvc.api.open(REQUESTS, rev=rev, mode="rb") as f:
            return pd.read_parquet(io.BytesIO(f.read()))
    except (DvcException, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ABError(f"{name}: {rev!r} is neither a result bundle folder (results/<host>/) nor a git revision or DVC "
                      f"experiment holding {REQUESTS} ({reason}); pass a bundle folder or a name `dvc exp list` "
                      "shows") from None


def _matches(value, wanted: str) -> bool:
    """Whether a row's value reads `wanted` on the command line (true/false for booleans, numbers by value)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower() == wanted.lower()
    if isinstance(value, (int, float, np.number)):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return value is not None and str(value) == wanted


def load_side(source: str, where: dict[str, str], name: str) -> Side:
    """A bundle folder or a git revision / DVC experiment name (`name`: A or B), its rows filtered by `where`."""
    if Path(source).is_dir():
        try:
            rows = load_bundle(Path(source)).requests
        except FileNotFoundError as exc:
            raise ABError(f"{name}: {exc}; pass a results/<host>/ folder written by "
                          "`python -m localbench.analysis.bundles export`") from None
        label, kind = Path(source).resolve().name, "bundle"
    else:
        rows, label, kind = _revision_rows(source, name), source, "revision"
    rows = rows.reindex(columns=list(dict.fromkeys([*rows.columns, *REQUEST_SCHEMA.names])))   # absent: empty
    for key, wanted in where.items():
        if key not in rows:
            raise ABError(f"--{name.lower()}-where {key}={wanted}: {key!r} is not a column of the request rows; "
                          f"use one of {', '.join(HOST_CELL)} (or another column of {REQUESTS})")
        keep = rows[key].map(lambda v, w=wanted: _matches(v, w)).astype(bool)
        if not keep.any():
            seen = ", ".join(sorted({str(v) for v in rows[key].dropna()})[:12]) or "none"
            raise ABError(f"--{name.lower()}-where {key}={wanted}: no row of {source} has it (values: {seen}); "
                          "fix the value")
        rows = rows[keep]
    tag = "".join(f"_{k}={v}" for k, v in where.items())
    return Side(name=name, label=re.sub(r"[^A-Za-z0-9._=+-]", "-", label + tag), source=source, kind=kind, rows=rows,
                where=dict(where))


def _plain(value):
    """A cell key value as JSON has it: None for missing, Python scalars for numpy ones."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _cells(rows: pd.DataFrame, key: list[str]) -> dict[tuple, pd.DataFrame]:
    """Warm single-stream ok rows by cell (the key's values as a tuple of plain values)."""
    warm = single_stream(rows)
    if not key:
        return {(): warm} if len(warm) else {}
    return {tuple(_plain(v) for v in (k if isinstance(k, tuple) else (k,))): g
            for k, g in warm.groupby(key, dropna=False, sort=False)}


def _sorted(cells) -> list[tuple]:
    return sorted(cells, key=lambda cell: tuple((v is None, v if v is not None else 0) for v in cell))


def _check_pooling(side: Side, cells: dict[tuple, pd.DataFrame], other: Side, key: list[str]):
    """A key left out because only the other side filters it must not pool several of its values into one cell."""
    for column in [c for c in HOST_CELL if c in other.where and c not in side.where]:
        for cell, g in cells.items():
            values = sorted({str(v) for v in g[column].dropna()})
            if len(values) > 1:
                raise ABError(f"{side.name}: cell {dict(zip(key, cell))} pools {column} = {', '.join(values)} "
                              f"because only {other.name} filters {column}; add --{side.name.lower()}-where "
                              f"{column}=VALUE")


def verdict(ratio: stats.Ratio, higher_is_better: bool) -> str:
    """faster / slower where the ratio's interval excludes 1, else no detectable difference; insufficient n
    where ratio_ci gives no interval (fewer than 3 values on a side)."""
    if math.isnan(ratio.lo) or math.isnan(ratio.hi):
        return INSUFFICIENT
    above, below = ("faster", "slower") if higher_is_better else ("slower", "faster")
    decided = stats.decide(ratio.lo, ratio.hi, 1.0, above=above, below=below)
    return NO_DIFFERENCE if decided == "inconclusive" else decided


def _windows(rows: pd.DataFrame) -> pd.Series:
    """Each row's measurement window (rows without one share one window rather than being dropped)."""
    return rows["window"].astype(object).where(rows["window"].notna(), "")


def compare(a: Side, b: Side, metrics: tuple[str, ...] = tuple(HIGHER_IS_BETTER)) -> dict:
    """The comparison as ab.json holds it; ABError where no cell matches or a cell would pool a dropped key."""
    key = [c for c in HOST_CELL if c not in set(a.where) | set(b.where)]
    cells_a, cells_b = _cells(a.rows, key), _cells(b.rows, key)
    _check_pooling(a, cells_a, b, key)
    _check_pooling(b, cells_b, a, key)
    matched = _sorted(set(cells_a) & set(cells_b))
    if not matched:
        raise ABError(f"no matched cell: A has {len(cells_a)} warm single-stream ok cells, B {len(cells_b)}, none "
                      f"alike on ({', '.join(key)}); compare runs that measured the same cells, or take the key that "
                      "differs out with --a-where/--b-where")
    out = []
    for cell in matched:
        ra, rb = undrifted(cells_a[cell]), undrifted(cells_b[cell])
        for metric in metrics:
            r = stats.ratio_ci(ra[metric], rb[metric], _windows(ra), _windows(rb))
            out.append({"cell": dict(zip(key, cell)), "metric": metric, "ratio": _number(r.ratio),
                        "ci": [_number(r.lo), _number(r.hi)], "n": [r.n_a, r.n_b],
                        "verdict": verdict(r, HIGHER_IS_BETTER[metric])})
    summary: dict = {}
    for metric in metrics:
        counts = {v: sum(c["metric"] == metric and c["verdict"] == v for c in out) for v in VERDICTS}
        decided = counts["faster"] + counts["slower"] + counts[NO_DIFFERENCE]
        summary[metric] = {**counts, "decided": decided,
                           "no_difference_share": counts[NO_DIFFERENCE] / decided if decided else None}
    only = {"a_only": _sorted(set(cells_a) - set(cells_b)), "b_only": _sorted(set(cells_b) - set(cells_a))}
    summary["unmatched"] = {side: len(cells) for side, cells in only.items()}
    summary["unmatched_cells"] = {side: [dict(zip(key, c)) for c in cells] for side, cells in only.items()}
    summary["drift_excluded"] = {side: sum(len(g) - len(undrifted(g)) for g in cells.values())
                                 for side, cells in (("a", cells_a), ("b", cells_b))}
    return {"a": a.describe(), "b": b.describe(), "cells": out, "summary": summary}


def _source_text(side: dict) -> str:
    where = ", ".join(f"{k}={v}" for k, v in side["where"].items())
    return f"{side['kind']} `{side['source']}`" + (f" where {where}" if where else "")


def _cell_text(cell: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items())


def _key_columns(cells: list[dict]) -> tuple[pd.DataFrame, dict]:
    """Cells as a table of the key columns that vary among them (at least one), and the values they all share."""
    frame = pd.DataFrame(cells)
    varying = [c for c in frame.columns if frame[c].astype(str).nunique() > 1] or list(frame.columns[:1])
    return frame[varying].astype(object), {c: frame[c].iloc[0] for c in frame.columns if c not in varying}


def ab_markdown(result: dict) -> str:
    """ab.json as Markdown: the sources, one row per cell and metric, the verdict counts, what was left out."""
    table, fixed = _key_columns([c["cell"] for c in result["cells"]])
    table["metric"] = [c["metric"] for c in result["cells"]]
    table["B/A [95 % CI]"] = [f"{markdown.fmt(c['ratio'])} " + (f"[{c['ci'][0]:.3g}, {c['ci'][1]:.3g}]"
                                                                if c["ci"][0] is not None else "[–]")
                              for c in result["cells"]]
    table["n (A, B)"] = [f"{na}, {nb}" for na, nb in (c["n"] for c in result["cells"])]
    table["verdict"] = [c["verdict"] for c in result["cells"]]
    s = result["summary"]
    lines = [f"# A/B: {result['a']['label']} vs {result['b']['label']}", "",
             f"- A: {_source_text(result['a'])}", f"- B: {_source_text(result['b'])}",
             *([f"- every cell: {_cell_text(fixed)}"] if fixed else []),
             ("- B/A is the ratio of the medians, its 95 % interval a bootstrap over each side's measurement "
              "windows; decode above 1 and TTFT below 1 read faster"), "", markdown.table(table)]
    for metric in HIGHER_IS_BETTER:
        if metric in s:
            m = s[metric]
            share = f"{m['no_difference_share']:.0%}" if m["no_difference_share"] is not None else "–"
            lines.append(f"- {metric}: {m['faster']} faster, {m['slower']} slower, {m[NO_DIFFERENCE]} {NO_DIFFERENCE}"
                         f" ({share} of the {m['decided']} with an interval), {m[INSUFFICIENT]} {INSUFFICIENT}"
                         " (< 3 values a side)")
    lines.append(f"- left out as drifted (drift_flag): {s['drift_excluded']['a']} rows of A, "
                 f"{s['drift_excluded']['b']} of B")
    lines.append(f"- unmatched cells, not compared: {s['unmatched']['a_only']} in A only, "
                 f"{s['unmatched']['b_only']} in B only")
    lonely = [(side[0].upper(), cell) for side, cells in s["unmatched_cells"].items() for cell in cells]
    if lonely:
        others, _ = _key_columns([cell for _, cell in lonely])
        lines += ["", markdown.table(others.assign(only_in=[side for side, _ in lonely]))]
    return "\n".join(lines) + "\n"


def _where(pairs: list[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ABError(f"{flag} {pair!r}: write KEY=VALUE, e.g. {flag} quant=F16")
        if key in out:
            raise ABError(f"{flag} {key}= given twice; give each key once")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """The command line (usage: the module docstring); 0 when ab.md and ab.json are written, else 2."""
    parser = argparse.ArgumentParser(prog="python -m localbench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="result bundle folder (results/<host>/) or git revision / DVC experiment name")
    parser.add_argument("b", help="the same for B (may be A again, with other filters)")
    parser.add_argument("--a-where", action="append", default=[], metavar="KEY=VALUE", help="keep A's rows with it")
    parser.add_argument("--b-where", action="append", default=[], metavar="KEY=VALUE", help="keep B's rows with it")
    parser.add_argument("--metric", action="append", choices=list(HIGHER_IS_BETTER),
                        help="compare only these metrics (default: all)")
    parser.add_argument("--out", type=Path, help="folder for ab.md and ab.json (default results/ab/<A>_vs_<B>/)")
    args = parser.parse_args(argv)
    try:
        a = load_side(args.a, _where(args.a_where, "--a-where"), "A")
        b = load_side(args.b, _where(args.b_where, "--b-where"), "B")
        result = compare(a, b, tuple(dict.fromkeys(args.metric or HIGHER_IS_BETTER)))
    except ABError as exc:
        print(f"ab: {exc}", file=sys.stderr)
        return 2
    out = args.out or RESULTS / "ab" / f"{a.label}_vs_{b.label}"
    out.mkdir(parents=True, exist_ok=True)
    text = ab_markdown(result)
    (out / "ab.md").write_text(text)
    (out / "ab.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text, end="")
    print(f"wrote {out / 'ab.md'} and {out / 'ab.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
