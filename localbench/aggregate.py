"""Summaries of the per-request rows: mean, std, p50/p90/p99 per cell, and the DVC metrics JSON."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from localbench.schema import REQUEST_SCHEMA

CELL = ["runtime", "transport", "model", "format", "quant", "workload", "prompt_tokens", "phase", "concurrency",
        "rate"]
STATS_OF = ["ttft_s", "e2e_s", "decode_tps", "tpot_s", "e2e_tps", "prefill_tps", "peak_rss_bytes",
            "device_mem_bytes", "cold_start_s"]


def read_raw(raw_dir: Path) -> pd.DataFrame:
    """Every runtime's requests.parquet in one frame (an empty frame of the schema if there are none)."""
    frames = [pd.read_parquet(p) for p in sorted(Path(raw_dir).glob("*/requests.parquet"))]
    frames = [f for f in frames if len(f)]
    if not frames:
        return REQUEST_SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def stats(values: pd.Series) -> dict:
    """n, mean, std, p50, p90, p99 of the non-missing values."""
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return {"n": 0, "mean": np.nan, "std": np.nan, "p50": np.nan, "p90": np.nan, "p99": np.nan}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"n": len(v), "mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else 0.0, "p50": p50, "p90": p90,
            "p99": p99}


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: counts by status, then <metric>_<stat> over the `ok` requests, ITL over all gaps."""
    out = []
    keyed = rows.assign(rate=rows["rate"].fillna(-1.0))
    for key, group in keyed.groupby(CELL, dropna=False, sort=True):
        ok = group[group["status"] == "ok"]
        rec = dict(zip(CELL, key))
        rec["rate"] = np.nan if rec["rate"] == -1.0 else rec["rate"]
        rec.update(n_requests=len(group), n_ok=len(ok), statuses=",".join(sorted(group["status"].unique())),
                   error=next(iter(group.loc[group["status"] != "ok", "error"].dropna()), None))
        for metric in STATS_OF:
            rec.update({f"{metric}_{s}": v for s, v in stats(ok[metric]).items() if s != "n"})
        gaps = pd.Series([g for lst in ok["itl_s"] for g in (lst if lst is not None else [])], dtype=float)
        rec.update({f"itl_s_{s}": v for s, v in stats(gaps).items() if s != "n"})
        out.append(rec)
    return pd.DataFrame(out)


def headline(rows: pd.DataFrame) -> dict:
    """metrics/summary.json: per runtime/transport/quant, over warm ok requests, the figures users compare."""
    metrics: dict = {}
    warm = rows[(rows["status"] == "ok") & (rows["phase"] == "warm")]
    for (runtime, transport, quant), g in warm.groupby(["runtime", "transport", "quant"]):
        gaps = [x for lst in g["itl_s"] for x in (lst if lst is not None else [])]
        metrics.setdefault(runtime, {}).setdefault(transport, {})[quant] = {
            "decode_tps_mean": round(float(g["decode_tps"].mean()), 3),
            "ttft_p50_s": round(float(g["ttft_s"].median()), 5),
            "ttft_p99_s": round(float(np.percentile(g["ttft_s"].dropna(), 99)), 5),
            "e2e_p99_s": round(float(np.percentile(g["e2e_s"].dropna(), 99)), 5),
            "itl_p50_ms": round(float(np.percentile(gaps, 50)) * 1e3, 3) if gaps else None,
            "itl_p99_ms": round(float(np.percentile(gaps, 99)) * 1e3, 3) if gaps else None,
            "cold_start_s": round(float(g["cold_start_s"].max()), 3),
            "peak_rss_mib": round(float(g["peak_rss_bytes"].max()) / 2**20, 1),
            "requests": int(len(g)),
        }
    failed = rows[rows["status"] != "ok"]
    metrics["failed_requests"] = {s: int(n) for s, n in failed["status"].value_counts().items()}
    return metrics
