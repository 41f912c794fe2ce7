"""Quality beside size and speed: the warm decode tok/s of each artifact (median with its 95 % interval), the
Pareto front of speed vs KL divergence, and the cross-runtime check (the same weights through different runtimes
must agree)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from localbench.core.stats import median_ci

FULL_PRECISION = {"gguf": ("F32", "BF16", "F16"), "hf": ("fp32", "bf16", "fp16"), "mlx": ("fp32", "bf16", "fp16")}
SPEED_KEYS = ("workload", "prompt_tokens", "transport")


def full_precision(frame: pd.DataFrame) -> pd.Series:
    """True for rows whose quant is a full-precision one of their format."""
    return frame.apply(lambda r: r["quant"] in FULL_PRECISION.get(r["format"], ()), axis=1)


def decode_speed(requests: pd.DataFrame | None, speed: dict) -> pd.DataFrame:
    """Warm single-stream decode tok/s per (runtime, quant) in the configured cell: the median with its 95 %
    interval (localbench.core.stats.median_ci over the rows' measurement windows), n and the cell. Rows of a
    drifted window (`drift_flag`) are left out: the claim decides on these numbers."""
    cols = ["runtime", "quant", "decode_tps", "decode_tps_lo", "decode_tps_hi", "decode_n", "speed_cell"]
    if requests is None or requests.empty:
        return pd.DataFrame(columns=cols)
    drifted = requests.get("drift_flag", pd.Series(False, index=requests.index)).fillna(False).astype(bool)
    warm = requests[(requests["status"] == "ok") & (requests["phase"] == "warm") & (requests["concurrency"] == 1)
                    & ~requests["cache_reuse"].fillna(False).astype(bool) & ~drifted]
    for key in SPEED_KEYS:
        if speed.get(key) is not None:
            warm = warm[warm[key] == speed[key]]
    out = []
    for (runtime, quant), g in warm.groupby(["runtime", "quant"]):
        cell = f"{speed.get('workload') or '*'}/{speed.get('prompt_tokens') or '*'} in, " \
               f"{'/'.join(str(int(m)) for m in sorted(g['max_tokens'].unique()))} out, {speed.get('transport') or '*'}"
        windows = g["window"] if "window" in g and g["window"].notna().all() else None
        est = median_ci(g["decode_tps"], windows)
        out.append({"runtime": runtime, "quant": quant, "decode_tps": est.value, "decode_tps_lo": est.lo,
                    "decode_tps_hi": est.hi, "decode_n": est.n, "speed_cell": cell})
    return pd.DataFrame(out, columns=cols)


def pareto(speed: pd.Series, loss: pd.Series) -> pd.Series:
    """True where no other point is at least as fast with at most the loss (and better in one)."""
    ok = speed.notna() & loss.notna()
    flags = pd.Series(False, index=speed.index)
    for i in speed.index[ok]:
        dominated = ((speed[ok] >= speed[i]) & (loss[ok] <= loss[i]) &
                     ((speed[ok] > speed[i]) | (loss[ok] < loss[i]))).any()
        flags[i] = not dominated
    return flags


def frontier(quality: pd.DataFrame, artifacts: pd.DataFrame, requests: pd.DataFrame | None,
             cfg: dict) -> pd.DataFrame:
    """Quality rows beside size, bits/weight, conversion time (data/artifacts.parquet) and warm decode tok/s."""
    arts = artifacts[["format", "quant", "size_bytes", "bits_per_weight", "convert_s"]]
    frame = quality.merge(arts, on=["format", "quant"], how="left")
    frame = frame.merge(decode_speed(requests, cfg.get("speed") or {}), on=["runtime", "quant"], how="left")
    frame["size_mib"] = frame["size_bytes"] / 2**20
    front = pareto(frame["decode_tps"].astype(float), frame["kld_mean"].astype(float))
    frame["pareto"] = front.where(frame["decode_tps"].notna() & frame["kld_mean"].notna()).astype(object)
    return frame


def frontier_table(cfg: dict, quality_file: Path, artifacts_file: Path, requests_file: Path) -> pd.DataFrame:
    """The `quality-frontier` stage's frame (data/quality_frontier.parquet) from data/quality.parquet,
    data/artifacts.parquet and, where measured, data/requests.parquet."""
    requests = pd.read_parquet(requests_file) if requests_file.exists() else None
    return frontier(pd.read_parquet(quality_file), pd.read_parquet(artifacts_file), requests, cfg)


def cross_runtime(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """The same weights through different runtimes: each full-precision artifact's PPL vs the reference's."""
    ok = frame[(frame["status"] == "ok") & full_precision(frame)] if len(frame) else frame
    rows = []
    for r in ok.itertuples():
        if r.reason == "reference":
            continue
        diff = abs(r.ppl / r.ppl_ref - 1)
        via = f" via {r.forward}" if isinstance(getattr(r, "forward", None), str) else ""
        rows.append({"check": f"{r.runtime} {r.format}/{r.quant}{via} vs {r.reference}", "ppl": r.ppl,
                     "ppl_ref": r.ppl_ref, "rel_diff": diff, "kld_mean": r.kld_mean, "top1": r.top1,
                     "verdict": "agree" if diff <= tolerance else "DISAGREE"})
    native = frame[frame["native_kld"].notna()] if "native_kld" in frame else frame.iloc[:0]
    for r in native.itertuples():
        # ln(PPL) moves by at most about the mean KL between the two distributions: hold it to the same tolerance
        rows.append({"check": f"mlx_lm forward vs {r.format}/{r.quant} weights in transformers "
                              f"(the first {int(r.native_tokens)} scored positions)", "ppl": None, "ppl_ref": None,
                     "rel_diff": None, "kld_mean": r.native_kld, "top1": r.native_top1,
                     "verdict": "agree" if r.native_kld <= math.log1p(tolerance) else "DISAGREE"})
    return pd.DataFrame(rows, columns=["check", "ppl", "ppl_ref", "rel_diff", "kld_mean", "top1", "verdict"])
