"""Summaries of the per-request rows: mean, std, p50/p90/p99 per cell, and the DVC metrics JSON."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from localbench.analysis.cells import in_cell, reference_cell
from localbench.core.schema import REQUEST_SCHEMA
from localbench.core.stats import median_ci, quantile

CELL = ["runtime", "transport", "model", "format", "quant", "workload", "prompt_tokens", "max_tokens", "cache_reuse",
        "phase", "concurrency", "rate"]
STATS_OF = ["ttft_s", "e2e_s", "decode_tps", "tpot_s", "e2e_tps", "prefill_tps", "peak_rss_bytes",
            "device_mem_bytes", "cold_start_s"]


def read_raw(raw_dir: Path) -> pd.DataFrame:
    """Every runtime's requests.parquet in one frame (an empty frame of the schema if there are none)."""
    frames = [pd.read_parquet(p) for p in sorted(Path(raw_dir).glob("*/requests.parquet"))]
    frames = [f for f in frames if len(f)]
    if not frames:
        return REQUEST_SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def stats(values: pd.Series, windows: pd.Series | None = None) -> dict:
    """n, mean, std (n >= 2), p50/p90/p99 (each only where n supports it: localbench.core.stats.min_n), the
    median's 95 % interval (p50_lo, p50_hi: over the windows given), max."""
    v = values.dropna().to_numpy(dtype=float)
    out = {"n": len(v), "mean": v.mean() if len(v) else np.nan, "std": v.std(ddof=1) if len(v) > 1 else np.nan}
    for q in (50, 90, 99):
        out[f"p{q}"] = quantile(v, q)
    est = median_ci(values, windows)
    out.update(p50_lo=est.lo, p50_hi=est.hi, max=v.max() if len(v) else np.nan)
    return out


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: counts by status, then <metric>_<stat> over the `ok` requests outside drift-flagged
    windows (counted in n_drift_flagged), ITL over all gaps."""
    out = []
    keyed = rows.assign(rate=rows["rate"].fillna(-1.0))
    for key, group in keyed.groupby(CELL, dropna=False, sort=True):
        flagged = group["drift_flag"].fillna(False).astype(bool)
        ok = group[(group["status"] == "ok") & ~flagged]
        rec = dict(zip(CELL, key))
        rec["rate"] = np.nan if rec["rate"] == -1.0 else rec["rate"]
        rec.update(n_requests=len(group), n_ok=len(ok), statuses=",".join(sorted(group["status"].unique())),
                   error=next(iter(group.loc[group["status"] != "ok", "error"].dropna()), None),
                   window_drift_max=group["window_drift"].max(), n_drift_flagged=int(flagged.sum()))
        for metric in STATS_OF:
            rec.update({f"{metric}_{s}": v for s, v in stats(ok[metric], ok["window"]).items() if s != "n"})
        gaps = pd.Series([g for lst in ok["itl_s"] for g in (lst if lst is not None else [])], dtype=float)
        rec.update({f"itl_s_{s}": v for s, v in stats(gaps).items() if s != "n"})
        out.append(rec)
    return pd.DataFrame(out)


def rounded(value: float, digits: int) -> float | None:
    """JSON-safe: None for NaN (no interval at this n)."""
    return None if value != value else round(value, digits)


def headline(rows: pd.DataFrame) -> dict:
    """metrics/summary.json: per runtime/transport/quant, on the one reference cell (the cold cell the most of
    them measured, named under "cell"), the figures users compare: medians with their 95 % intervals (null where
    n cannot support one)."""
    metrics: dict = {}
    cell = reference_cell(rows)
    warm = in_cell(rows, cell) if cell else rows.iloc[0:0]
    if cell:
        metrics["cell"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in cell.items()}
    for (runtime, transport, quant), g in warm.groupby(["runtime", "transport", "quant"]):
        decode, ttft = median_ci(g["decode_tps"], g["window"]), median_ci(g["ttft_s"], g["window"])
        metrics.setdefault(runtime, {}).setdefault(transport, {})[quant] = {
            "decode_tps_median": round(decode.value, 3),
            "decode_tps_ci": [rounded(decode.lo, 3), rounded(decode.hi, 3)],
            "ttft_median_s": round(ttft.value, 5),
            "ttft_ci_s": [rounded(ttft.lo, 5), rounded(ttft.hi, 5)],
            "peak_rss_mib": None if g["peak_rss_bytes"].isna().all() else
            round(float(g["peak_rss_bytes"].max()) / 2**20, 1),
            "requests": int(len(g)),
        }
    failed = rows[rows["status"] != "ok"]
    metrics["failed_requests"] = {s: int(n) for s, n in failed["status"].value_counts().items()}
    return metrics
