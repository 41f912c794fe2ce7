"""Summaries of the per-request rows: mean, std, p50/p90/p99 per cell, and the DVC metrics JSON."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from localbench.analysis.cells import reference_cell, reference_rows, sweep_pass_warmups, undrifted
from localbench.analysis.decisions import cell_text
from localbench.core.schema import REQUEST_SCHEMA
from localbench.core.stats import median_ci, quantile

CELL = ["runtime", "transport", "model", "format", "quant", "workload", "prompt_tokens", "max_tokens", "cache_reuse",
        "phase", "concurrency", "rate"]
STATS_OF = ["ttft_s", "e2e_s", "decode_tps", "tpot_s", "e2e_tps", "prefill_tps", "peak_rss_bytes",
            "device_mem_bytes", "cold_start_s", "energy_j", "decode_j_per_token", "prefill_j_per_token",
            "decode_tok_per_j", "idle_power_w"]


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
    windows (counted in n_drift_flagged), ITL over all gaps; a separate sweep pass's warm-ups in no cell."""
    out = []
    kept = rows[~sweep_pass_warmups(rows)]
    keyed = kept.assign(rate=kept["rate"].fillna(-1.0))
    for key, group in keyed.groupby(CELL, dropna=False, sort=True):
        flagged = group["drift_flag"].fillna(False).astype(bool)
        ok = group[(group["status"] == "ok") & ~flagged]
        rec = dict(zip(CELL, key))
        rec["rate"] = np.nan if rec["rate"] == -1.0 else rec["rate"]
        rec.update(n_requests=len(group), n_ok=len(ok), statuses=",".join(sorted(group["status"].unique())),
                   error=next(iter(group.loc[group["status"] != "ok", "error"].dropna()), None),
                   window_drift_max=group["window_drift"].max(), n_drift_flagged=int(flagged.sum()))
        for metric in STATS_OF:       # a column older bundles lack (energy) summarises as empty
            values = ok[metric] if metric in ok else pd.Series(np.nan, index=ok.index)
            rec.update({f"{metric}_{s}": v for s, v in stats(values, ok["window"]).items() if s != "n"})
        gaps = pd.Series([g for lst in ok["itl_s"] for g in (lst if lst is not None else [])], dtype=float)
        rec.update({f"itl_s_{s}": v for s, v in stats(gaps).items() if s != "n"})
        out.append(rec)
    return pd.DataFrame(out)


def headline(rows: pd.DataFrame) -> dict:
    """metrics/summary.json, the first columns of `dvc exp show`: the reference cell (the cold cell the most
    runtime/transport/quant combinations measured, as text), per runtime its fastest-decoding artifact's median
    decode tok/s, median TTFT (s) and peak RSS (MiB) there, which artifact that is (transport/quant, under
    "artifact"), and failed requests by status. Intervals and every other artifact: data/summary.parquet and the report."""
    metrics: dict = {}
    cell = reference_cell(rows)
    if cell:
        metrics["cell"] = cell_text(cell)
    warm = undrifted(reference_rows(rows))
    artifacts = {}
    for runtime, g in warm.groupby("runtime"):
        per = {(t, q): a for (t, q), a in g.groupby(["transport", "quant"])}
        (transport, quant), best = max(per.items(), key=lambda kv: kv[1]["decode_tps"].median())
        artifacts[runtime] = f"{transport}/{quant}"
        metrics[runtime] = {
            "decode_tps": round(float(best["decode_tps"].median()), 3),
            "ttft_s": round(float(best["ttft_s"].median()), 5),
            "peak_rss_mib": None if best["peak_rss_bytes"].isna().all() else
            round(float(best["peak_rss_bytes"].max()) / 2**20, 1),
        }
    metrics["artifact"] = artifacts      # after the numbers: the first screen of `dvc exp show` holds the numbers
    failed = rows[rows["status"] != "ok"]
    metrics["failed_requests"] = {s: int(n) for s, n in failed["status"].value_counts().items()}
    return metrics
