"""The study's claims, each one registered unit: the data it needs, its threshold, its minimum evidence, its verdict.

A claim function gets the request rows (check_all leaves out the rows of drift-flagged windows first) and returns
a Finding: its verdict, its effect with a 95 % interval, and the evidence. A claim is a set of decisions
(localbench.analysis.decisions): each an effect at one matched cell with its interval, `supported` or
`contradicted` only where the interval excludes the threshold and the minimum evidence is there, combined into the
claim's verdict (supported only where every one is, contradicted where any one is, else `inconclusive (… needs
n ≈ …)`). Runtimes are compared per matched cell of one transport and one precision class (4-bit against 4-bit,
16-bit against 16-bit), artifact pair by artifact pair. Data that is simply absent raises NotTestable ("not
testable here"); any other exception is the verdict `error` in the report (its traceback logged).

A claim judged on another stage's frame instead of the request rows is registered with `@frame_claim(text,
threshold, data, min_evidence)`: its function gets that frame and the config block holding its thresholds and
returns one (claim, Finding) per unit it judges (e.g. per quantized artifact); `check_all(rows, quality=frame,
cfg=...)` judges it when its frame is given.

The module is over 400 lines because it is the one registry of the study's claims: one short function per claim,
each beside its wording, threshold and minimum evidence (the decision machinery they share lives in
localbench.analysis.decisions).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import pandas as pd

from localbench.analysis.cells import MATCH, WHO, anchors, cold_unique, single_stream, undrifted
from localbench.analysis.decisions import (
    MIN_N,
    SAME_CELL,
    Decision,
    Finding,
    cell_text,
    combine,
    decided,
    matched_pairs,
    measured_artifacts,
    n_to_decide,
    ratio_decision,
    ratio_per_pair,
    who_served,
)
from localbench.analysis.longctx import extra_of, kv_columns
from localbench.core.stats import bootstrap_ci, decide, median_ci, quantile, stratified_ci
from localbench.quality.frontier import FULL_PRECISION, full_precision
from localbench.workload.prompts import can_hit

log = logging.getLogger(__name__)

MIN_LOADS = 6             # loads before a median load time has a 95 % interval (stats.order_ci)
MIN_GAPS = 100            # inter-token gaps per side before a p99 means something (stats.min_n)
K_BAND = (0.8, 1.2)       # "linear": the fitted exponent of TTFT ∝ n^k within this band
MIN_TOKENS_SCORED = 8192  # scored tokens before the quality claim is decided (issue 23: "at least 8k")


class NotTestable(Exception):
    """The rows hold no data the claim can judge; the message says what is missing."""


@dataclass(frozen=True)
class Claim:
    text: str
    threshold: str
    judge: Callable[[pd.DataFrame], Finding]
    min_evidence: str = ""


CLAIMS: list[Claim] = []


def claim(text: str, threshold: str, min_evidence: str):
    """Register a claim function under the study's wording, its stated threshold and its minimum evidence."""
    def register(fn):
        CLAIMS.append(Claim(text, threshold, fn, min_evidence))
        return fn
    return register


@dataclass(frozen=True)
class FrameClaim:
    """A claim judged on another stage's frame (`data`: the check_all keyword that carries it), one Finding per unit:
    judge(frame, cfg) returns [(claim text, Finding)] or raises NotTestable."""
    text: str
    threshold: str
    data: str
    judge: Callable[[pd.DataFrame, dict], list[tuple[str, Finding]]]
    min_evidence: str = ""


FRAME_CLAIMS: list[FrameClaim] = []


def frame_claim(text: str, threshold: str, data: str, min_evidence: str):
    """Register a claim judged on the frame passed to check_all as `data` (e.g. "quality")."""
    def register(fn):
        FRAME_CLAIMS.append(FrameClaim(text, threshold, data, fn, min_evidence))
        return fn
    return register


# --- the claims ---------------------------------------------------------------------------------------------------
@claim("MLX achieves the highest sustained decode throughput",
       "MLX's median decode tok/s ÷ each other runtime's, per matched cell of one transport and precision class "
       "(4-bit vs 4-bit, 16-bit vs 16-bit ...): 95 % interval above 1 in every cell pair",
       f"n ≥ {MIN_N} requests per side per cell")
def mlx_highest_decode(rows):
    decisions = ratio_per_pair(rows, SAME_CELL, lambda f: f["runtime"] != "mlx", lambda f: f["runtime"] == "mlx",
                               "decode_tps", "decode", 1.0, "supported", "contradicted")
    if not decisions:
        raise NotTestable("MLX shares no matched cell (same transport and precision class) with another runtime "
                          f"(measured: {measured_artifacts(rows)})")
    return combine(decisions, "cell pair")


@claim("MLC-LLM has lower TTFT than MLX on moderate prompts (≤16k)",
       "MLC's median TTFT ÷ MLX's per matched cell of ≤ 16k tokens, one transport and precision class: 95 % "
       "interval below 1 in every cell pair",
       f"n ≥ {MIN_N} requests per side per cell")
def mlc_ttft_below_mlx(rows):
    decisions = ratio_per_pair(rows[rows["prompt_tokens"] <= 16384], SAME_CELL, lambda f: f["runtime"] == "mlx",
                               lambda f: f["runtime"] == "mlc", "ttft_s", "TTFT", 1.0, "contradicted", "supported")
    if not decisions:
        raise NotTestable("no matched cell of ≤ 16k tokens (same transport and precision class) measured by both "
                          f"MLC and MLX (measured: {measured_artifacts(rows)})")
    return combine(decisions, "cell pair")


@claim("llama.cpp cold start is under 0.5 s (cached GGUF)",
       "median in-process load -> ready over llama.cpp's sessions (any GGUF): 95 % interval below 0.5 s",
       f"≥ {MIN_LOADS} loads (a median's interval needs them)")
def llamacpp_cold_start(rows):
    inproc = rows[(rows["runtime"] == "llamacpp") & (rows["transport"] == "inprocess")]
    loads = inproc.drop_duplicates(["quant", "cold_start_s"])["cold_start_s"].dropna()   # one value per session
    if loads.empty:
        raise NotTestable("llama.cpp's in-process cold start is missing")
    est = median_ci(loads)
    decision = decided("llama.cpp in-process load -> ready (s), median over sessions", "", est.value, est.lo,
                       est.hi, (est.n,), 0.5, "contradicted", "supported", MIN_LOADS)
    return combine([decision], "median")


@claim("TTFT rises with input length (full prefill before the first token)",
       "median TTFT at each prompt length ÷ at the next shorter one, per runtime/transport/quant (cold unique "
       "prompts): 95 % interval above 1 for every consecutive pair",
       f"n ≥ {MIN_N} requests per length")
def ttft_grows(rows):
    data = cold_unique(rows)
    decisions = []
    for _, g in data.groupby(WHO):
        lengths = sorted(g["prompt_tokens"].unique())
        for short, long_ in pairwise(lengths):
            at = g[g["prompt_tokens"] == short], g[g["prompt_tokens"] == long_]
            decisions.append(ratio_decision(*at, "ttft_s", f"{who_served(g)} TTFT", f"{long_} ÷ {short} tokens",
                                            1.0, "supported", "contradicted"))
    if not decisions:
        raise NotTestable("no runtime measured two prompt lengths of the unique workload")
    return combine(decisions, "length pair")


@claim("Quantization improves throughput (4-bit vs 16-bit)",
       "4-bit median decode tok/s ÷ the 16-bit artifact's, same runtime, transport and cell: 95 % interval above "
       "1.05 in every cell pair",
       f"n ≥ {MIN_N} requests per side per cell")
def quantization_speeds_decode(rows):
    decisions = ratio_per_pair(rows, MATCH + ["runtime", "transport"], lambda f: f["precision"] == "16-bit",
                               lambda f: f["precision"] == "4-bit", "decode_tps", "decode", 1.05, "supported",
                               "contradicted")
    if not decisions:
        raise NotTestable("no runtime measured a 4-bit and a 16-bit artifact on the same cells "
                          f"(measured: {measured_artifacts(rows)})")
    return combine(decisions, "cell pair")


def gaps_of(frame: pd.DataFrame) -> list[list[float]]:
    """Each request's inter-token gaps."""
    return [list(v) for v in frame["itl_s"] if isinstance(v, (list, tuple, np.ndarray)) and len(v)]


def itl_spread(requests: list[list[float]]) -> float:
    """ITL p99 / p50 over the gaps of the given requests (NaN below the gaps a p99 needs)."""
    gaps = [x for r in requests for x in r]
    p50 = quantile(gaps, 50)
    return quantile(gaps, 99) / p50 if p50 > 0 else math.nan


@claim("MLX has the most stable inter-token latency",
       "MLX's ITL p99/p50 ÷ each other runtime's, per matched cell of one transport and precision class (interval: "
       "bootstrap over requests): 95 % interval below 1 in every cell pair",
       f"n ≥ {MIN_N} requests and ≥ {MIN_GAPS} gaps per side per cell")
def mlx_most_stable_itl(rows):
    decisions = []
    for cell, a, b in matched_pairs(rows, SAME_CELL, lambda f: f["runtime"] != "mlx", lambda f: f["runtime"] == "mlx"):
        ga, gb = gaps_of(a), gaps_of(b)
        lo, hi = stratified_ci([ga, gb], lambda s: itl_spread(s[1]) / itl_spread(s[0]))
        decision = replace(decided(f"{who_served(b)} ÷ {who_served(a)} ITL p99/p50", cell_text(cell),
                                   itl_spread(gb) / itl_spread(ga), lo, hi, (len(ga), len(gb)), 1.0, "contradicted",
                                   "supported"), cells=anchors(a, b))
        fewest = min(sum(map(len, ga)), sum(map(len, gb)))
        if fewest < MIN_GAPS:
            lacks = ", ".join(filter(None, [decision.missing, f"{fewest} < {MIN_GAPS} gaps a side"]))
            decision = replace(decision, verdict="inconclusive", need=max(decision.need, MIN_N), missing=lacks)
        decisions.append(decision)
    if not decisions:
        raise NotTestable("MLX shares no matched cell (same transport and precision class) with another runtime "
                          f"(measured: {measured_artifacts(rows)})")
    return combine(decisions, "cell pair")


@claim("llama.cpp decode collapses beyond 32k tokens (~1.2 tok/s)",
       "llama.cpp's median decode tok/s after cold prompts of ≥ 30,000 tokens ÷ the same transport/quant's at its "
       "shortest ≥ 1k cell: 95 % interval below 0.5 (a collapse, not a slow machine) for every transport/quant",
       f"n ≥ {MIN_N} requests per length")
def llamacpp_decode_collapse(rows):
    data = cold_unique(rows)
    data = data[(data["runtime"] == "llamacpp") & (data["prompt_tokens"] >= 1024)]
    decisions = []
    for _, g in data.groupby(WHO):
        shortest = g["prompt_tokens"].min()
        if shortest >= 30000:
            continue
        base = g[g["prompt_tokens"] == shortest]
        for n, long_ in g[g["prompt_tokens"] >= 30000].groupby("prompt_tokens"):
            decisions.append(ratio_decision(base, long_, "decode_tps", f"{who_served(g)} decode",
                                            f"{n} ÷ {shortest} tokens", 0.5, "contradicted", "supported"))
    if not decisions:
        raise NotTestable("no llama.cpp transport/quant measured at ≥ 30,000 prompt tokens and a shorter ≥ 1k cell")
    return combine(decisions, "length pair")


def log_slope(lengths: list[float], strata: list[list[float]]) -> float:
    """k of TTFT ∝ n^k: the least-squares slope of log median TTFT per length over log length."""
    return float(np.polyfit(np.log(lengths), np.log([np.median(s) for s in strata]), 1)[0])


def ttft_exponents(rows: pd.DataFrame, min_tokens: int = 1024) -> list[Decision]:
    """Per runtime/transport/quant with ≥ 2 cold lengths ≥ min_tokens: the fitted k of TTFT ∝ n^k with its
    bootstrap interval (requests resampled within each length), decided against the band K_BAND (supported
    inside, contradicted outside); fewer than 3 lengths or n < MIN_N at a length is below minimum evidence."""
    data = cold_unique(rows)
    data = data[(data["prompt_tokens"] >= min_tokens) & (data["ttft_s"] > 0)]
    decisions = []
    for _, g in data.groupby(WHO):
        by_len = {n: list(s) for n, s in g.groupby("prompt_tokens")["ttft_s"]}
        if len(by_len) < 2:
            continue
        lengths, strata = list(map(float, by_len)), list(by_len.values())
        k = log_slope(lengths, strata)
        lo, hi = stratified_ci(strata, lambda s, at=lengths: log_slope(at, s))
        n = (min(map(len, strata)),)
        where = f"{len(lengths)} lengths {int(lengths[0])}-{int(lengths[-1])}"
        low = decided(f"{who_served(g)} k", where, k, lo, hi, n, K_BAND[0], "supported", "contradicted")
        high = decided(f"{who_served(g)} k", where, k, lo, hi, n, K_BAND[1], "contradicted", "supported")
        sides = (low.verdict, high.verdict)
        verdict = ("contradicted" if "contradicted" in sides else
                   "supported" if sides == ("supported", "supported") else "inconclusive")
        decision = replace(low, threshold=min(K_BAND, key=lambda e: abs(k - e)), verdict=verdict,
                           need=max(low.need, high.need) if verdict == "inconclusive" else 0, cells=anchors(g))
        if len(lengths) < 3:
            lacks = ", ".join(filter(None, [decision.missing, f"{len(lengths)} < 3 lengths"]))
            decision = replace(decision, verdict="inconclusive", missing=lacks)
        decisions.append(decision)
    return decisions


@claim("TTFT grows linearly with input length",
       f"fitted exponent k of TTFT ∝ n^k (cold unique prompts ≥ 1k tokens; interval: bootstrap over the requests "
       f"at each length) within [{K_BAND[0]}, {K_BAND[1]}] for every runtime/transport/quant",
       f"≥ 3 lengths of ≥ 1k tokens, n ≥ {MIN_N} requests per length")
def ttft_linear(rows):
    decisions = ttft_exponents(rows)
    if not decisions:
        raise NotTestable("no runtime measured two or more cold prompt lengths of ≥ 1k tokens")
    return combine(decisions, "fit")


def reuse_decisions(rows: pd.DataFrame, runtime: str, workload: str = "prefix") -> list[Decision]:
    """Per cell (transport, quant, length) of `runtime`'s `workload` prompts a cache can serve (after their set's
    first: prompts.can_hit) measured with reuse on and off: the median TTFT on ÷ off (decided against 0.85: a
    ≥ 15 % cut) and, where the runtime reports reused tokens, the hit rate (reused over prompt tokens per request,
    mean with a bootstrap interval; decided against 0.70)."""
    warm = single_stream(rows)
    warm = warm[(warm["runtime"] == runtime) & (warm["workload"] == workload)]
    warm = warm[warm["prompt_id"].map(can_hit).astype(bool)]
    decisions = []
    for (tr, quant, n, out), g in warm.groupby(["transport", "quant", "prompt_tokens", "max_tokens"]):
        reuse = g["cache_reuse"].astype(bool)
        both = set(g.loc[reuse, "prompt_id"]) & set(g.loc[~reuse, "prompt_id"])
        on, off = g[reuse & g["prompt_id"].isin(both)], g[~reuse & g["prompt_id"].isin(both)]
        if on.empty:
            continue
        name, where = f"{runtime}/{tr}/{quant}", f"{workload} {n}→{out}"
        decisions.append(ratio_decision(off, on, "ttft_s", f"{name} TTFT reuse on ÷ off", where, 0.85,
                                        "contradicted", "supported"))
        hit = (kv_columns(on, {})["cached_tokens"] / on["prompt_tokens"]).dropna()
        if len(hit):
            lo, hi = bootstrap_ci(hit)
            decisions.append(replace(decided(f"{name} hit rate", where, float(hit.mean()), lo, hi, (len(hit),),
                                             0.70, "supported", "contradicted"), cells=anchors(on)))
    return decisions


@claim("Prefix reuse cuts latency by ~23 % with ~80 % hit rate (Ollama)",
       "Ollama's prefix-heavy prompts after their set's first, per cell: median TTFT with reuse ÷ without, 95 % "
       "interval below 0.85 (a ≥ 15 % cut), and the share of prompt tokens reported reused, interval above 0.70",
       f"n ≥ {MIN_N} requests per side per cell")
def ollama_prefix_reuse(rows):
    others = [combine(found, "decision").effect for rt in sorted(set(single_stream(rows)["runtime"]) - {"ollama"})
              if (found := reuse_decisions(rows, rt))]
    compare = f"for comparison: {'; '.join(others)}" if others else ""
    decisions = reuse_decisions(rows, "ollama")
    if not decisions:
        raise NotTestable("no prefix prompt measured by ollama with reuse both on and off" +
                          (f" ({compare})" if compare else ""))
    if not any(d.what.endswith("hit rate") for d in decisions):
        raise NotTestable("Ollama reported no reused-token count")
    return combine(decisions, "decision", compare)


@claim("MLX memory stays stable with a rotating window",
       "with max_kv_size set, MLX's median KV-cache bytes at the longest prompt beyond the window ÷ those at the "
       "shortest prompt that fills it: 95 % interval below 1.1, per transport/quant",
       f"n ≥ {MIN_N} requests per length")
def mlx_rotating_stable(rows):
    warm = single_stream(rows)
    mlx = warm[warm["runtime"] == "mlx"]
    bound = mlx[[extra_of(e).get("max_kv_size") is not None for e in mlx["extra"]]]
    if bound.empty:
        raise NotTestable("no MLX request ran with a rotating window (engine.mlx.max_kv_size)")
    bound = kv_columns(bound, {})
    window = int(extra_of(bound["extra"].iloc[0])["max_kv_size"])
    full = bound[bound["prompt_tokens"] + bound["max_tokens"] >= window]
    decisions = []
    for _, g in full.groupby(WHO):
        lengths = sorted(g["prompt_tokens"].unique())
        if len(lengths) >= 2:
            at = g[g["prompt_tokens"] == lengths[0]], g[g["prompt_tokens"] == lengths[-1]]
            decisions.append(ratio_decision(*at, "kv_runtime_bytes", f"{who_served(g)} KV bytes",
                                            f"{lengths[-1]} ÷ {lengths[0]} tokens", 1.1, "contradicted", "supported"))
    if not decisions:
        raise NotTestable(f"fewer than two MLX prompt lengths fill the window of {window} tokens")
    return combine(decisions, "length pair", f"window {window} tokens")


OOM_TOKENS = 2048


@claim("PyTorch OOMs beyond ~2k tokens",
       f"every torch request of > {OOM_TOKENS:,} prompt tokens ends `oom` (the paper: MPS's 4 GB tensor cap); "
       "contradicted by any such prompt that completed (device named)",
       f"≥ {MIN_N} torch requests of > {OOM_TOKENS:,} tokens to support (one completion contradicts)")
def torch_ooms(rows):
    torch_rows = rows[(rows["runtime"] == "torch") & (rows["phase"] == "warm")]
    long_ = torch_rows[torch_rows["prompt_tokens"] > OOM_TOKENS]
    if long_.empty:
        raise NotTestable(f"torch ran no prompt of more than {OOM_TOKENS:,} tokens")
    ooms, done = long_[long_["status"] == "oom"], long_[long_["status"] == "ok"]
    device = ", ".join(sorted(set(torch_rows["device"].dropna()))) or "?"
    if ooms.empty and done.empty:
        raise NotTestable(f"no torch request of > {OOM_TOKENS:,} tokens completed or failed with OOM on {device} "
                          f"(statuses: {sorted(set(long_['status']))})")
    first = f"; first OOM at {int(ooms['prompt_tokens'].min())} tokens" if len(ooms) else ""
    effect = (f"{len(ooms)} of {len(long_)} torch requests of > {OOM_TOKENS:,} tokens OOM, {len(done)} completed"
              + first)
    if len(done):
        top = done.loc[done["prompt_tokens"].idxmax()]
        rss = top.get("peak_rss_bytes")
        rss = "" if pd.isna(rss) else f", peak RSS {rss / 2**30:.1f} GiB"
        return Finding("contradicted", effect, f"on {device}: completed up to {int(top['prompt_tokens'])} tokens{rss} "
                                               "(the paper's cap is MPS's 4 GB per tensor)")
    if len(ooms) < MIN_N:
        return Finding("inconclusive (below minimum evidence)", effect,
                       f"on {device}: {len(ooms)} OOM, fewer than the {MIN_N} requests a verdict needs")
    return Finding("supported", effect, f"on {device}: every request of > {OOM_TOKENS:,} tokens ended oom")


# --- the quality claim (a frame claim) ------------------------------------------------------------------------------
QUALITY_CLAIM = "Quantization improves efficiency without noticeable accuracy loss"


def accuracy_loss(r: dict, max_dppl: float, min_top1: float, min_tokens: int) -> tuple[str, str]:
    """(verdict, effect) of "no noticeable loss" from the ΔPPL and top-1 intervals (bootstrap over scored windows):
    supported where ΔPPL's interval lies below max_dppl and top-1's above min_top1, contradicted where either lies
    wholly on the wrong side, else inconclusive (no interval, too few scored tokens, or the n that would decide)."""
    point = f"ΔPPL {r['delta_ppl']:+.2%}, top-1 {r['top1']:.1%}"
    if any(pd.isna(r.get(c)) for c in ("delta_ppl_lo", "delta_ppl_hi", "top1_lo", "top1_hi")):
        return "inconclusive (no interval)", point + " (no interval)"
    tokens = r.get("tokens_scored")
    tokens = 0 if pd.isna(tokens) else int(tokens)
    effect = (f"ΔPPL {r['delta_ppl']:+.2%} [{r['delta_ppl_lo']:+.2%}, {r['delta_ppl_hi']:+.2%}], top-1 "
              f"{r['top1']:.1%} [{r['top1_lo']:.1%}, {r['top1_hi']:.1%}] over {tokens:,} scored tokens")
    if tokens < min_tokens:
        return f"inconclusive (below minimum evidence: {tokens:,} < {min_tokens:,} scored tokens)", effect
    dppl = decide(r["delta_ppl_lo"], r["delta_ppl_hi"], max_dppl, "contradicted", "supported")
    top1 = decide(r["top1_lo"], r["top1_hi"], min_top1, "supported", "contradicted")
    if "contradicted" in (dppl, top1):
        return "contradicted", effect
    if dppl == top1 == "supported":
        return "supported", effect
    needs = [n_to_decide(r[f"{c}_lo"], r[f"{c}_hi"], r[c], t, tokens)
             for c, t, v in (("delta_ppl", max_dppl, dppl), ("top1", min_top1, top1)) if v == "inconclusive"]
    return "inconclusive" + (f" (needs ≈ {max(needs):,} scored tokens)" if max(needs) else ""), effect


def fewer_bits(r: dict, ok: pd.DataFrame) -> tuple[str, str]:
    """(verdict, text): fewer bits per weight than the narrowest full-precision artifact of its own format."""
    full = ok[(ok["format"] == r["format"]) & ok["quant"].isin(FULL_PRECISION.get(r["format"], ()))]
    bits = full["bits_per_weight"].dropna() if "bits_per_weight" in full else pd.Series(dtype=float)
    if bits.empty or pd.isna(r.get("bits_per_weight")):
        return "inconclusive", f"bits/weight: no full-precision {r['format']} artifact to compare with"
    ref = full.loc[bits.idxmin()]
    verdict = "supported" if r["bits_per_weight"] < ref["bits_per_weight"] else "contradicted"
    return verdict, (f"{r['bits_per_weight']:.2f} vs {ref['bits_per_weight']:.2f} bits/weight "
                     f"({r['format']}/{ref['quant']})")


def faster_decode(r: dict, ok: pd.DataFrame) -> tuple[str | None, str]:
    """(verdict, text): faster decode than its format's fastest full-precision artifact, decided by the two decode
    intervals (decode_tps_lo/hi) where the frame has them, else the point values ("no interval"); None where
    decode was not measured for both."""
    full = ok[(ok["format"] == r["format"]) & ok["quant"].isin(FULL_PRECISION.get(r["format"], ()))]
    full = full[full["decode_tps"].notna()] if "decode_tps" in full else full.iloc[0:0]
    if full.empty or pd.isna(r.get("decode_tps")):
        return None, "decode not measured in a shared cell"
    base = full.loc[full["decode_tps"].idxmax()].to_dict()
    name = f"{r['format']}/{base['quant']}"
    bounds = [r.get("decode_tps_lo"), r.get("decode_tps_hi"), base.get("decode_tps_lo"), base.get("decode_tps_hi")]
    if any(pd.isna(b) for b in bounds):
        verdict = "supported" if r["decode_tps"] > base["decode_tps"] else "contradicted"
        return verdict, f"decode {r['decode_tps']:.1f} vs {base['decode_tps']:.1f} tok/s ({name}; no interval)"
    lo, hi, base_lo, base_hi = bounds
    verdict = "supported" if lo > base_hi else "contradicted" if hi < base_lo else "inconclusive"
    return verdict, (f"decode {r['decode_tps']:.1f} [{lo:.1f}, {hi:.1f}] vs {base['decode_tps']:.1f} "
                     f"[{base_lo:.1f}, {base_hi:.1f}] tok/s ({name})")


@frame_claim(QUALITY_CLAIM,
             "per quantized artifact, against the reference: ΔPPL's 95 % interval below quality.claim.max_delta_ppl "
             "and top-1 agreement's above quality.claim.min_top1 (no noticeable loss); fewer bits per weight than "
             "its format's full precision and, where decode was measured for both in one runtime, faster decode "
             "(efficiency)", "quality",
             f"bootstrap intervals over scored windows (delta_ppl_lo/hi, top1_lo/hi) and ≥ quality.claim.min_tokens "
             f"(default {MIN_TOKENS_SCORED:,}) scored tokens")
def quantization_keeps_accuracy(frame: pd.DataFrame, cfg: dict) -> list[tuple[str, Finding]]:
    """`frame`: the quality frontier (data/quality_frontier.parquet); `cfg`: the quality params block, whose
    `claim` holds the thresholds (defaults: ΔPPL < 2 %, top-1 > 90 %, 8,192 scored tokens)."""
    thr = cfg.get("claim") or {}
    max_dppl, min_top1 = float(thr.get("max_delta_ppl", 0.02)), float(thr.get("min_top1", 0.90))
    min_tokens = int(thr.get("min_tokens", MIN_TOKENS_SCORED))
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    quants = ok[~full_precision(ok)] if len(ok) else ok
    if quants.empty:
        raise NotTestable("no quantized artifact with quality numbers (synthetic weights or none converted)")
    out = []
    for r in quants.to_dict("records"):
        loss, loss_effect = accuracy_loss(r, max_dppl, min_top1, min_tokens)
        size, size_text = fewer_bits(r, ok)
        speed, speed_text = faster_decode(r, ok)
        parts = [loss, size] + ([speed] if speed else [])
        if any(p == "contradicted" for p in parts):
            verdict = "contradicted"
        elif all(p == "supported" for p in parts):
            verdict = "supported"
        else:
            verdict = loss if loss.startswith("inconclusive") else "inconclusive"
        evidence = (f"loss {loss} (ΔPPL < {max_dppl:.0%}, top-1 > {min_top1:.0%}), KLD {r['kld_mean']:.4f}; "
                    f"size {size}: {size_text}; speed {speed or 'not decided'}: {speed_text}")
        out.append((f"{QUALITY_CLAIM}: {r['runtime']} {r['format']}/{r['quant']}",
                    Finding(verdict, f"{loss_effect}; {size_text}; {speed_text}", evidence)))
    return out


# --- the registry judged ----------------------------------------------------------------------------------------------
def judged(text: str, judge: Callable[[], list[tuple[str, Finding]]]) -> list[tuple[str, Finding]]:
    """judge()'s findings; NotTestable as "not testable here", any other exception as the verdict `error` with its
    one-line text (traceback logged at ERROR)."""
    try:
        return judge()
    except NotTestable as exc:
        return [(text, Finding("not testable here", None, str(exc)))]
    except Exception as exc:      # a bug in a claim is shown in the report; it must not stop the stage
        log.error("claim %r raised", text, exc_info=exc)
        first = (str(exc).splitlines() or [""])[0]
        return [(text, Finding("error", None, f"{type(exc).__name__}: {first}"))]


def threshold_of(c: Claim | FrameClaim) -> str:
    return f"{c.threshold}; minimum evidence: {c.min_evidence}" if c.min_evidence else c.threshold


COLUMNS = ["claim", "threshold", "verdict", "effect", "evidence", "_links"]   # _links: the page's cell anchors


def check_all(rows: pd.DataFrame | None, extra: list[Claim] = (), *, quality: pd.DataFrame | None = None,
              cfg: dict | None = None) -> pd.DataFrame:
    """Every registered claim judged: claim, threshold (with its minimum evidence), verdict, effect (with its 95 %
    interval), evidence, and `_links`: the anchors of the cells it rests on (the page links them). The request-row
    claims (plus `extra`) on `rows` (skipped when None) without the rows of
    drift-flagged windows (their number in the evidence); each frame claim on its frame when given (`quality`: the
    quality frontier, with `cfg` the quality params block), one row per unit it judges."""
    out = []
    if rows is not None:
        kept = undrifted(rows)
        left = len(rows) - len(kept)
        note = f"; {left} row{'s' if left != 1 else ''} of drift-flagged windows left out" if left else ""
        for c in [*CLAIMS, *extra]:
            for text, f in judged(c.text, lambda c=c: [(c.text, c.judge(kept))]):
                out.append({"claim": text, "threshold": threshold_of(c), "verdict": f.verdict, "effect": f.effect,
                            "evidence": f.evidence + note, "_links": list(f.cells)})
    frames = {"quality": quality}
    for fc in FRAME_CLAIMS:
        if frames.get(fc.data) is None:
            continue
        for text, f in judged(fc.text, lambda fc=fc: fc.judge(frames[fc.data], cfg or {})):
            out.append({"claim": text, "threshold": threshold_of(fc), "verdict": f.verdict, "effect": f.effect,
                        "evidence": f.evidence, "_links": list(f.cells)})
    return pd.DataFrame(out, columns=COLUMNS)
