"""The report's result tables, built from the per-request rows on matched cells (localbench.analysis.cells).

Each function returns a DataFrame; report.py only assembles them. Comparisons never pool different cells:
a table either keeps the cell in its rows or pivots it into columns.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from localbench.analysis.cells import MATCH, WHO, label, single_stream
from localbench.core.stats import mean_std, percentile
from localbench.measure import drift


def cell_name(frame: pd.DataFrame) -> pd.Series:
    """'unique 128→32' (+ ' reuse') names of the matched cells of single-stream rows."""
    reuse = np.where(frame["cache_reuse"].astype(bool), " reuse", "")
    return (frame["workload"] + " " + frame["prompt_tokens"].astype(str) + "→" + frame["max_tokens"].astype(str)
            + reuse)


def pivot(rows: pd.DataFrame, metric: str, digits: int = 3) -> pd.DataFrame:
    """One row per runtime/transport/quant, one column per matched cell: 'mean ± std (n)' of `metric`;
    blank where that runtime did not measure the cell."""
    warm = single_stream(rows)
    if warm.empty:
        return pd.DataFrame()
    warm = warm.assign(cell=cell_name(warm), who=label(warm, WHO))
    order = warm.drop_duplicates("cell").sort_values(["cache_reuse", "workload", "prompt_tokens"])["cell"]
    out = warm.groupby(["who", "cell"])[metric].agg(lambda v: f"{mean_std(v)} (n={v.notna().sum()})")
    return out.unstack("cell").reindex(columns=list(order)).fillna("").reset_index().rename(
        columns={"who": "runtime/transport/quant"})


def detail(rows: pd.DataFrame) -> pd.DataFrame:
    """Every single-stream cell of every runtime: n, decode mean ± std, TTFT/e2e/ITL percentiles (or max of n),
    cold start and peak memory."""
    warm = single_stream(rows)
    out = []
    for key, g in warm.groupby(MATCH + WHO, sort=True):
        cell = dict(zip(MATCH + WHO, key))
        gaps = [x * 1e3 for lst in g["itl_s"] for x in (lst if lst is not None else [])]
        out.append({**{k: cell[k] for k in WHO + ["workload", "prompt_tokens", "max_tokens", "cache_reuse"]},
                    "n": len(g), "decode tok/s": mean_std(g["decode_tps"]),
                    "TTFT p50 (s)": percentile(g["ttft_s"], 50), "TTFT p99 (s)": percentile(g["ttft_s"], 99),
                    "e2e p50 (s)": percentile(g["e2e_s"], 50), "e2e p90 (s)": percentile(g["e2e_s"], 90),
                    "ITL p50 (ms)": percentile(gaps, 50), "ITL p99 (ms)": percentile(gaps, 99),
                    "peak RSS (MiB)": g["peak_rss_bytes"].max() / 2**20,
                    "flagged": int(g["flag"].notna().sum()) if "flag" in g else 0})
    return pd.DataFrame(out)


def cold_start(rows: pd.DataFrame) -> pd.DataFrame:
    """Load -> ready per runtime/transport/quant (n sessions), and the first request's TTFT after it."""
    cold = rows[rows["phase"] == "cold"]
    return pd.DataFrame([{"runtime/transport/quant": "/".join(map(str, k)), "sessions": len(g),
                          "cold start (s)": mean_std(g["cold_start_s"]),
                          "first request TTFT (s)": mean_std(g["ttft_s"])}
                         for k, g in cold.groupby(WHO)])


def memory(rows: pd.DataFrame) -> pd.DataFrame:
    """Peak memory per runtime/transport/quant: RSS (server: process tree; in-process: minus the harness's
    pre-load baseline) and the runtime's own device/buffer report."""
    warm = single_stream(rows)
    return pd.DataFrame([{"runtime/transport/quant": "/".join(map(str, k)), "n": len(g),
                          "peak RSS (MiB)": g["peak_rss_bytes"].max() / 2**20,
                          "runtime-reported (MiB)": g["device_mem_bytes"].max() / 2**20}
                         for k, g in warm.groupby(WHO)])


def failures(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that are not ok (and ok rows carrying a flag), counted per runtime/transport/quant/status."""
    bad = rows[(rows["status"] != "ok") | rows["flag"].notna()].assign(
        status=lambda f: np.where(f["status"] == "ok", "ok, flagged", f["status"]),
        reason=lambda f: f["error"].fillna(f["flag"]))
    if bad.empty:
        return pd.DataFrame()
    return (bad.groupby(["runtime", "transport", "quant", "status"], dropna=False)
            .agg(requests=("status", "size"), reason=("reason", "first")).reset_index())


def windows_of(extras: list[dict]) -> list[dict]:
    """Every measurement window of every runtime (localbench.measure.session), with how far its probe moved."""
    return [{**w, "moved": drift.moved(w.get("probes_gbps") or [])} for e in extras for w in e.get("windows") or []]


def drift_table(extras: list[dict], tolerance: float) -> pd.DataFrame:
    """Per runtime/transport/quant: windows, the probe's range (GB/s), the largest move, windows flagged."""
    frame = pd.DataFrame(windows_of(extras))
    if frame.empty:
        return frame
    frame["lo"] = frame["probes_gbps"].map(min)
    frame["hi"] = frame["probes_gbps"].map(max)
    return pd.DataFrame([{"runtime/transport/quant": "/".join(k), "windows": len(g),
                          "probe min (GB/s)": g["lo"].min(), "probe max (GB/s)": g["hi"].max(),
                          "largest move in a window": f"{g['moved'].max():.1%}",
                          f"windows moved > {tolerance:.0%}": int((g["moved"] > tolerance).sum())}
                         for k, g in frame.groupby(["runtime", "transport", "quant"])])


def own_prompt_ms(extra: str | None) -> float:
    """llama.cpp's own prompt-eval time of a row (in-process: llama_perf; llama-server: its `timings`), ms."""
    record = json.loads(extra) if extra else {}
    value = record.get("llama_prompt_ms", (record.get("timings") or {}).get("prompt_ms"))
    return float(value) if value is not None else float("nan")


def fidelity(rows: pd.DataFrame, extras: list[dict], tolerance: float, drift_tolerance: float) -> pd.DataFrame:
    """The pipeline's llama.cpp prefill/decode tok/s beside llama-bench's, on the same file and shape, each pair
    taken in one measurement window; a difference above `tolerance` is flagged with the window's probe move."""
    ours = single_stream(rows)
    ours = ours[(ours["runtime"] == "llamacpp") & ~ours["cache_reuse"].astype(bool) & (ours["workload"] != "chat")]
    out = []
    for w in windows_of(extras):
        for b in (r for r in w.get("references") or [] if r.get("kind") == "llama-bench fidelity"):
            g = ours[(ours["window"] == w["window"]) & (ours["prompt_tokens"] == b["prompt_tokens"])
                     & (ours["max_tokens"] == b["n_gen"])]
            row = {"quant": w["quant"], "transport": w["transport"], "prompt_tokens": b["prompt_tokens"],
                   "n_gen": b["n_gen"], "n": len(g), "probe moved": f"{w['moved']:.1%}",
                   # TTFT minus llama.cpp's own prompt eval: what the harness, the transport and the server add
                   "TTFT − own prompt eval (ms, median)": (g["ttft_s"] * 1e3 - g["extra"].map(own_prompt_ms)).median()}
            flags = [b["flag"]] if b.get("flag") else []
            for phase in ("prefill", "decode"):
                mine, ref = g[f"{phase}_tps"].mean(), b.get(f"bench_{phase}_tps")
                diff = (mine - ref) / ref if ref and mine == mine else float("nan")
                row.update({f"{phase} tok/s (pipeline)": mine, f"{phase} tok/s (llama-bench)": ref,
                            f"{phase} diff": f"{diff:+.1%}" if diff == diff else "–"})
                if abs(diff) > tolerance:
                    flags.append(f"{phase} {diff:+.1%}")
            if flags and w["moved"] > drift_tolerance:
                flags.append(f"probe moved {w['moved']:.1%} in this window (machine drift)")
            row["flag"] = "; ".join(flags) or "ok"
            out.append(row)
    return pd.DataFrame(out)
