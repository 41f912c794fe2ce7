"""The study's claims, each one registered unit: the data it needs, its threshold, its verdict.

A claim function gets the request rows and returns (verdict, evidence) with verdict "supported" or
"contradicted", or raises NotTestable. A comparative claim is judged only on matched cells that at least
two runtimes measured (localbench.cells.common); missing or NaN data is "not testable here", never a verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from localbench.cells import MATCH, common, single_stream


class NotTestable(Exception):
    """The rows cannot judge the claim; the message says what is missing."""


@dataclass(frozen=True)
class Claim:
    text: str
    threshold: str
    judge: Callable[[pd.DataFrame], tuple[str, str]]


CLAIMS: list[Claim] = []


def claim(text: str, threshold: str):
    """Register a claim function under the study's wording and its stated threshold."""
    def register(fn):
        CLAIMS.append(Claim(text, threshold, fn))
        return fn
    return register


def matched(rows: pd.DataFrame, runtimes: list[str] | None = None) -> pd.DataFrame:
    """Single-stream rows on cells every included runtime measured; NotTestable unless >= 2 runtimes share one."""
    warm = single_stream(rows)
    if runtimes is not None:
        warm = warm[warm["runtime"].isin(runtimes)]
    both = common(warm)
    if both["runtime"].nunique() < 2:
        raise NotTestable(f"no matched cell measured by two or more of {runtimes or 'the runtimes'} "
                          f"(measured: {sorted(warm['runtime'].unique()) or 'none'})")
    return both


def finite(value: float, what: str) -> float:
    if value is None or not math.isfinite(value):
        raise NotTestable(f"{what} is missing")
    return float(value)


@claim("MLX achieves the highest sustained decode throughput",
       "MLX's mean decode tok/s over matched cells is the highest of all runtimes")
def mlx_highest_decode(rows):
    both = matched(rows)
    if "mlx" not in set(both["runtime"]):
        raise NotTestable("MLX shares no matched cell with another runtime")
    means = both.groupby("runtime")["decode_tps"].mean()
    top = means.idxmax()
    return ("supported" if top == "mlx" else "contradicted",
            f"{both.groupby(MATCH).ngroups} matched cells; mean decode " +
            ", ".join(f"{k} {v:.1f}" for k, v in means.sort_values(ascending=False).items()) + " tok/s")


@claim("MLC-LLM has lower TTFT than MLX on moderate prompts (≤16k)",
       "median TTFT of MLC below MLX's on matched cells of ≤16k tokens")
def mlc_ttft_below_mlx(rows):
    both = matched(rows[rows["prompt_tokens"] <= 16384], ["mlc", "mlx"])
    m = both.groupby("runtime")["ttft_s"].median()
    return ("supported" if m["mlc"] < m["mlx"] else "contradicted",
            f"median TTFT: mlc {m['mlc']:.3f} s, mlx {m['mlx']:.3f} s")


@claim("llama.cpp cold start is under 0.5 s (cached GGUF)", "fastest in-process load -> ready < 0.5 s")
def llamacpp_cold_start(rows):
    cold = rows[(rows["runtime"] == "llamacpp") & (rows["transport"] == "inprocess")]["cold_start_s"].min()
    cold = finite(cold, "llama.cpp's in-process cold start")
    return ("supported" if cold < 0.5 else "contradicted", f"llama.cpp in-process cold start {cold:.2f} s")


@claim("TTFT rises with input length (full prefill before the first token)",
       "median TTFT increases with prompt length for every runtime/transport measured at ≥2 lengths "
       "(cold unique prompts); log-log slope shown")
def ttft_grows(rows):
    warm = single_stream(rows)
    warm = warm[(warm["workload"] == "unique") & ~warm["cache_reuse"].astype(bool)]
    parts, ok = [], True
    for (rt, tr), g in warm.groupby(["runtime", "transport"]):
        by_len = g.groupby("prompt_tokens")["ttft_s"].median().dropna()
        if len(by_len) < 2:
            continue
        slope = np.polyfit(np.log(by_len.index.to_numpy(float)), np.log(by_len.to_numpy(float)), 1)[0]
        grows = bool(by_len.is_monotonic_increasing)
        ok &= grows
        parts.append(f"{rt}/{tr}: {'grows' if grows else 'not monotone'} (slope {slope:.2f})")
    if not parts:
        raise NotTestable("no runtime measured two prompt lengths of the unique workload")
    return ("supported" if ok else "contradicted", "; ".join(parts))


@claim("Quantization improves throughput (4-bit vs 16-bit)",
       "4-bit decode tok/s ≥ 5 % above the 16-bit artifact's on the same cells, for every runtime with both")
def quantization_speeds_decode(rows):
    warm = single_stream(rows)
    bits16 = {"F16", "BF16", "bf16", "fp16", "float16"}
    bits4 = {"Q4_K_M", "Q4_0", "4bit", "q4f16_1"}
    parts, ok = [], True
    for (rt, tr), g in warm.groupby(["runtime", "transport"]):
        hi, lo = g[g["quant"].isin(bits16)], g[g["quant"].isin(bits4)]
        cells = set(map(tuple, hi[MATCH].values)) & set(map(tuple, lo[MATCH].values))
        if not cells:
            continue
        pick = lambda f: f[f[MATCH].apply(tuple, axis=1).isin(cells)]["decode_tps"].mean()  # noqa: E731
        gain = pick(lo) / pick(hi) - 1
        ok &= gain >= 0.05
        parts.append(f"{rt}/{tr}: 4-bit {gain:+.0%} vs 16-bit on {len(cells)} cells")
    if not parts:
        raise NotTestable("no runtime measured a 4-bit and a 16-bit artifact on the same cells")
    return ("supported" if ok else "contradicted", "; ".join(parts))


@claim("MLX has the most stable inter-token latency",
       "lowest ITL p99/p50 over matched cells, each runtime with ≥ 100 gaps")
def mlx_most_stable_itl(rows):
    both = matched(rows)
    spread = {}
    for rt, g in both.groupby("runtime"):
        gaps = np.array([x for lst in g["itl_s"] for x in lst])
        if len(gaps) >= 100:
            spread[rt] = np.percentile(gaps, 99) / max(np.percentile(gaps, 50), 1e-9)
    if "mlx" not in spread or len(spread) < 2:
        raise NotTestable(f"fewer than 100 gaps on matched cells for MLX or its peers ({sorted(spread)})")
    best = min(spread, key=spread.get)
    return ("supported" if best == "mlx" else "contradicted",
            "ITL p99/p50: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(spread.items())))


def check_all(rows: pd.DataFrame, extra: list[Claim] = ()) -> pd.DataFrame:
    """Every registered claim (plus `extra`) judged on `rows`: claim, threshold, verdict, evidence."""
    out = []
    for c in [*CLAIMS, *extra]:
        try:
            verdict, evidence = c.judge(rows)
        except NotTestable as exc:
            verdict, evidence = "not testable here", str(exc)
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as exc:
            verdict, evidence = "not testable here", f"not enough data ({type(exc).__name__}: {exc})"
        out.append({"claim": c.text, "threshold": c.threshold, "verdict": verdict, "evidence": evidence})
    return pd.DataFrame(out)
