"""Matched cells: what may be compared (DESIGN.md, fidelity).

Runtimes are compared only on identical (workload, prompt_tokens, max_tokens, cache_reuse, concurrency)
cells; hosts only on identical HOST_CELL keys. How much a statistic of n requests can say: localbench.core.stats.
"""
from __future__ import annotations

import re

import pandas as pd

MATCH = ["workload", "prompt_tokens", "max_tokens", "cache_reuse", "concurrency"]   # what makes two requests alike
WHO = ["runtime", "transport", "quant"]                                              # who served them
# across hosts (localbench.analysis.bundles): the same model, artifact and serving path, and the same cell
HOST_CELL = ["model", "runtime", "transport", "format", "quant", "workload", "prompt_tokens", "max_tokens",
             "cache_reuse", "phase", "concurrency"]


FULL_BITS = {"f32": "32-bit", "fp32": "32-bit", "float32": "32-bit", "f16": "16-bit", "fp16": "16-bit",
             "float16": "16-bit", "bf16": "16-bit", "bfloat16": "16-bit"}


def precision(quant) -> str | None:
    """The precision class of a quant name, whatever its format: '32-bit', '16-bit' (F16/BF16/fp16/bf16),
    '<n>-bit' (GGUF Q<n>_*/IQ<n>_*, MLX <n>bit and the learned awq_/gptq_/dwq_<n>, torchao int<n>, MLC q<n>f16_*; MLC
    q0f16/q0f32: unquantized), 'mixed' (MLX mixed_<a>_<b> and the learned dynamic_<a>_<b>); None for a name it does
    not know. Runtimes are compared only within one class."""
    q = str(quant or "").lower()
    if q in FULL_BITS:
        return FULL_BITS[q]
    if q.startswith(("mixed_", "dynamic_")):
        return "mixed"
    unquantized = re.fullmatch(r"q0f(16|32)(_\w*)?", q)
    if unquantized:
        return f"{unquantized[1]}-bit"
    bits = (re.match(r"i?q(\d)(_|f|$)", q) or re.fullmatch(r"(\d)bit", q) or re.fullmatch(r"int(\d)", q)
            or re.fullmatch(r"(?:awq|gptq|dwq)_(\d)", q))
    return f"{bits[1]}-bit" if bits else None


def undrifted(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows outside drift-flagged windows (drift_flag not True; every row where the column is absent): what
    verdicts and decisions may use."""
    if "drift_flag" not in rows:
        return rows
    return rows[~rows["drift_flag"].astype("boolean").fillna(False).astype(bool)]


def sweep_passes(r: pd.DataFrame) -> set:
    """Runs that were a separate sweep pass: they ran load sweeps and the same runtime has a run without any
    (benchmarks/gpu_run.py's gpu-load pass). Their own single-stream requests ran under the sweep's server settings
    (more slots, a larger KV pool): not the single-stream cell. A run that measured both (the ci and default
    profiles' one measure stage) keeps its single-stream rows."""
    swept = r.loc[r["phase"] == "load", "run_id"].dropna()
    plain = set(r.loc[~r["run_id"].isin(set(swept)), "runtime"])
    return {run for run, runtime in r.loc[r["run_id"].isin(set(swept)), ["run_id", "runtime"]].drop_duplicates()
            .itertuples(index=False) if runtime in plain}


def sweep_pass_warmups(rows: pd.DataFrame) -> pd.Series:
    """True on the warm requests of a separate sweep pass (sweep_passes): in no single-stream cell, no summary."""
    if "run_id" not in rows:
        return pd.Series(False, index=rows.index)
    return (rows["phase"] == "warm") & rows["run_id"].isin(sweep_passes(rows))


def single_stream(rows: pd.DataFrame) -> pd.DataFrame:
    """Warm, successful single-stream requests (the population every single-stream table draws from)."""
    return rows[(rows["status"] == "ok") & (rows["phase"] == "warm") & (rows["concurrency"] == 1)
                & ~sweep_pass_warmups(rows)]


def label(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """'a/b/c' labels from the given columns (an empty Series for an empty frame)."""
    out = frame[columns[0]].astype(str)
    for column in columns[1:]:
        out = out + "/" + frame[column].astype(str)
    return out


def cell_anchor(rec) -> str:
    """The page anchor of one artifact's single-stream cell (a row of the report's cell table; claims and the
    summary link to it): 'cell-<runtime>-<transport>-<quant>-<workload>-<prompt>-<max>' (+ '-reuse')."""
    parts = [rec["runtime"], rec["transport"], rec["quant"], rec["workload"], int(rec["prompt_tokens"]),
             int(rec["max_tokens"])] + (["reuse"] if bool(rec["cache_reuse"]) else [])
    return "cell-" + "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)) for p in parts)


def anchors(*frames: pd.DataFrame) -> tuple[str, ...]:
    """The cell anchors (cell_anchor) of the single-stream rows in `frames`, in order, each once."""
    keys = WHO + ["workload", "prompt_tokens", "max_tokens", "cache_reuse"]
    found = [cell_anchor(r) for f in frames for r in single_stream(f).drop_duplicates(keys)[keys].to_dict("records")]
    return tuple(dict.fromkeys(found))


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


def reference_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The single-stream rows of the reference cell (reference_cell); none where there is no such cell."""
    cell = reference_cell(rows)
    return in_cell(rows, cell) if cell else rows.iloc[0:0]


def cold_unique(rows: pd.DataFrame) -> pd.DataFrame:
    """Single-stream rows of unique prompts with no cache reuse: every prompt paid its full prefill."""
    warm = single_stream(rows)
    return warm[(warm["workload"] == "unique") & ~warm["cache_reuse"].astype(bool)]
