"""The report's result tables, built from the per-request rows on matched cells (localbench.analysis.cells).

Each function returns a DataFrame; report.py only assembles them. Comparisons never pool different cells:
a table either keeps the cell in its rows or pivots it into columns.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from localbench.analysis.cells import MATCH, WHO, cell_anchor, label, single_stream, undrifted
from localbench.core.stats import median_ci, percentile
from localbench.measure import drift


def cell_name(frame: pd.DataFrame) -> pd.Series:
    """'unique 128→32' (+ ' reuse') names of the matched cells of single-stream rows."""
    reuse = np.where(frame["cache_reuse"].astype(bool), " reuse", "")
    return (frame["workload"] + " " + frame["prompt_tokens"].astype(str) + "→" + frame["max_tokens"].astype(str)
            + reuse)


def stop_notes(extras: list[dict]) -> dict[tuple, str]:
    """Per (runtime, transport, quant, workload, prompt tokens, reuse): why a cell stopped, where it stopped short
    of its stopping rule (the time cap, max trials, a failure; localbench.measure.schedule)."""
    notes = {}
    for e in extras:
        for c in e.get("cells") or []:
            if c["stop"] not in ("target interval", "planned trials"):
                notes[(c["runtime"], c["transport"], c["quant"], c["workload"], int(c["target_tokens"]),
                       bool(c["cache_reuse"]))] = c["stop"]
    return notes


def estimate(g: pd.DataFrame, metric: str, digits: int = 3, note: str | None = None) -> str:
    """'median [95 % CI] (n)' of one cell's `metric` (interval over its windows; localbench.core.stats), with the
    reason the cell stopped where it stopped short."""
    text = median_ci(g[metric], g["window"]).text(digits)
    return text[:-1] + f", {note})" if note and text.endswith(")") else text


def pivot(rows: pd.DataFrame, metric: str, digits: int = 3, extras: list[dict] = ()) -> pd.DataFrame:
    """One row per runtime/transport/quant, one column per matched cell: 'median [95 % CI] (n)' of `metric`
    (rows of drift-flagged windows left out; a cell measured only in such windows says so); blank where that
    runtime did not measure the cell."""
    warm = single_stream(rows)
    if warm.empty:
        return pd.DataFrame()
    notes = stop_notes(list(extras))
    warm = warm.assign(cell=cell_name(warm), who=label(warm, WHO))
    order = warm.drop_duplicates("cell").sort_values(["cache_reuse", "workload", "prompt_tokens"])["cell"]
    out = {}
    for (who, cell), every in warm.groupby(["who", "cell"]):
        g, r = undrifted(every), every.iloc[0]
        note = notes.get((r["runtime"], r["transport"], r["quant"], r["workload"], int(r["prompt_tokens"]),
                          bool(r["cache_reuse"])))
        out[(who, cell)] = estimate(g, metric, digits, note) if len(g) else \
            f"– (all {len(every)} in drift-flagged windows)"
    frame = pd.Series(out, dtype=object)
    frame.index.names = ["who", "cell"]
    return frame.unstack("cell").reindex(columns=list(order)).fillna("").reset_index().rename(
        columns={"who": "runtime/transport/quant"})


def detail(rows: pd.DataFrame, extras: list[dict] = ()) -> pd.DataFrame:
    """Every single-stream cell of every runtime: n, windows, decode and TTFT medians with their 95 % intervals,
    TTFT/e2e/ITL percentiles where n supports them (else the max of n), peak memory and why the cell stopped;
    `_id`: the cell's page anchor (claims and the summary link to it)."""
    warm = single_stream(undrifted(rows))
    notes = stop_notes(list(extras))
    out = []
    for key, g in warm.groupby(MATCH + WHO, sort=True):
        cell = dict(zip(MATCH + WHO, key))
        gaps = [x * 1e3 for lst in g["itl_s"] for x in (lst if lst is not None else [])]
        note = notes.get((cell["runtime"], cell["transport"], cell["quant"], cell["workload"],
                          int(cell["prompt_tokens"]), bool(cell["cache_reuse"])))
        out.append({**{k: cell[k] for k in WHO + ["workload", "prompt_tokens", "max_tokens", "cache_reuse"]},
                    "n": len(g), "windows": g["window"].nunique(), "decode tok/s": estimate(g, "decode_tps"),
                    "TTFT (s)": estimate(g, "ttft_s"), "TTFT p99 (s)": percentile(g["ttft_s"], 99),
                    "e2e p90 (s)": percentile(g["e2e_s"], 90),
                    "ITL p50 (ms)": percentile(gaps, 50), "ITL p99 (ms)": percentile(gaps, 99),
                    "peak RSS (MiB)": g["peak_rss_bytes"].max() / 2**20, "stopped short": note or "",
                    "flagged": int(g["flag"].notna().sum()) if "flag" in g else 0, "_id": cell_anchor(cell)})
    return pd.DataFrame(out)


def cold_start(rows: pd.DataFrame) -> pd.DataFrame:
    """Load -> ready per runtime/transport/quant (one per session load: a round), and the first request's TTFT
    after it, each 'median [95 % CI] (n)'."""
    cold = rows[rows["phase"] == "cold"]
    return pd.DataFrame([{"runtime/transport/quant": "/".join(map(str, k)),
                          "cold start (s)": median_ci(g["cold_start_s"]).text(),
                          "first request TTFT (s)": median_ci(g["ttft_s"]).text()}
                         for k, g in cold.groupby(WHO)])


def memory(rows: pd.DataFrame) -> pd.DataFrame:
    """Peak memory per runtime/transport/quant: RSS (server: process tree; in-process: minus the harness's
    pre-load baseline) and the runtime's own device/buffer report."""
    warm = single_stream(rows)
    return pd.DataFrame([{"runtime/transport/quant": "/".join(map(str, k)), "n": len(g),
                          "peak RSS (MiB)": g["peak_rss_bytes"].max() / 2**20,
                          "runtime-reported (MiB)": g["device_mem_bytes"].max() / 2**20}
                         for k, g in warm.groupby(WHO)])


def energy_reasons(extras: list[dict]) -> list[str]:
    """Per runtime: which energy counter its rows read, or why none (localbench.measure.energy)."""
    out = []
    for e in extras:
        info = e.get("energy")
        if info:
            out.append(f"- {e['runtime']}: " + (f"{info['meter']} (updates every {info['resolution_s'] * 1e3:.0f} ms)"
                                                 if info.get("meter") else f"unavailable: {info['reason']}"))
    return out


def energy(rows: pd.DataFrame, extras: list[dict]) -> pd.DataFrame:
    """Per single-stream cell with energy readings: decode tok/s and tok/J ('median [95 % CI] (n)'), J per output
    token, J per prompt token (only where the median TTFT is over 10 updates of the counter: shorter prefills
    are not resolved) and the windows' idle power (W) beside."""
    warm = single_stream(undrifted(rows))
    if "decode_tok_per_j" not in warm:
        return pd.DataFrame()
    warm = warm[warm["decode_tok_per_j"].notna()]
    resolution = {e["runtime"]: (e.get("energy") or {}).get("resolution_s") for e in extras}
    out = []
    for key, g in warm.groupby(MATCH + WHO, sort=True):
        cell = dict(zip(MATCH + WHO, key))
        res = resolution.get(cell["runtime"]) or float("nan")
        resolved = not g["ttft_s"].median() < 10 * res            # NaN resolution: not known, shown
        out.append({**{k: cell[k] for k in WHO + ["workload", "prompt_tokens", "max_tokens", "cache_reuse"]},
                    "decode tok/s": estimate(g, "decode_tps"), "decode tok/J": estimate(g, "decode_tok_per_j"),
                    "J / output token": g["decode_j_per_token"].median(),
                    "J / prompt token": g["prefill_j_per_token"].median() if resolved else float("nan"),
                    "idle (W)": g["idle_power_w"].median(), "meter": g["energy_meter"].iloc[0],
                    "_id": cell_anchor(cell)})
    return pd.DataFrame(out)


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
    return [{**w, "moved": drift.window_drift(w)} for e in extras for w in e.get("windows") or []]


def drift_table(extras: list[dict], tolerance: float) -> pd.DataFrame:
    """Per runtime/transport/quant: windows, the matmul probe's range (GFLOP/s) and largest move (what flags a
    window), windows flagged and re-run, and the bandwidth probe's range beside (GB/s; noisy on shared VMs)."""
    frame = pd.DataFrame(windows_of(extras))
    if frame.empty:
        return frame
    span = lambda col, f: frame[col].map(lambda v: f(v) if v else float("nan")) if col in frame else np.nan  # noqa: E731
    frame = frame.assign(flo=span("probes_gflops", min), fhi=span("probes_gflops", max),
                         blo=span("probes_gbps", min), bhi=span("probes_gbps", max),
                         flagged=frame["flagged"] if "flagged" in frame else frame["moved"] > tolerance,
                         rerun=frame["rerun_of"].notna() if "rerun_of" in frame else False)
    return pd.DataFrame([{"runtime/transport/quant": "/".join(k), "windows": len(g),
                          "matmul probe (GFLOP/s)": f"{g['flo'].min():.0f}-{g['fhi'].max():.0f}",
                          "largest move in a window": f"{g['moved'].max():.1%}",
                          f"windows moved > {tolerance:.0%} (flagged)": int(g["flagged"].sum()),
                          "re-runs": int(g["rerun"].sum()),
                          "bandwidth probe (GB/s)": f"{g['blo'].min():.0f}-{g['bhi'].max():.0f}"}
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
            if flags and w.get("flagged", w["moved"] > drift_tolerance):
                flags.append(f"probe moved {w['moved']:.1%} in this window (machine drift)")
            row["flag"] = "; ".join(flags) or "ok"
            out.append(row)
    return pd.DataFrame(out)
