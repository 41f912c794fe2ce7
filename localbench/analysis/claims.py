"""The study's claims, each one registered unit: the data it needs, its threshold, its verdict.

A claim function gets the request rows and returns (verdict, evidence) with verdict "supported" or
"contradicted", or raises NotTestable. A comparative claim is judged only on matched cells that at least
two runtimes measured (localbench.analysis.cells.common); missing or NaN data is "not testable here", never a verdict.

A claim judged on another stage's frame instead of the request rows is registered with `@frame_claim(text,
threshold, data)`: its function gets that frame and the config block holding its thresholds and returns one
{claim, verdict, evidence} row per unit it judges (e.g. per quantized artifact); `check_all(rows, quality=frame,
cfg=...)` judges it when its frame is given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from localbench.analysis.cells import MATCH, cold_unique, common, single_stream
from localbench.analysis.longctx import extra_of, kv_columns
from localbench.quality.frontier import FULL_PRECISION, full_precision
from localbench.workload.prompts import can_hit


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


@dataclass(frozen=True)
class FrameClaim:
    """A claim judged on another stage's frame (`data`: the check_all keyword that carries it), one row per unit:
    judge(frame, cfg) returns [{claim, verdict, evidence}] or raises NotTestable."""
    text: str
    threshold: str
    data: str
    judge: Callable[[pd.DataFrame, dict], list[dict]]


FRAME_CLAIMS: list[FrameClaim] = []


def frame_claim(text: str, threshold: str, data: str):
    """Register a claim judged on the frame passed to check_all as `data` (e.g. "quality")."""
    def register(fn):
        FRAME_CLAIMS.append(FrameClaim(text, threshold, data, fn))
        return fn
    return register


def matched_runtimes(rows: pd.DataFrame, runtimes: list[str] | None = None) -> pd.DataFrame:
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
    both = matched_runtimes(rows)
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
    both = matched_runtimes(rows[rows["prompt_tokens"] <= 16384], ["mlc", "mlx"])
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
    warm = cold_unique(rows)
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
    both = matched_runtimes(rows)
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


@claim("llama.cpp decode collapses beyond 32k tokens (~1.2 tok/s)",
       "llama.cpp's mean decode tok/s after cold prompts of ≥ 30,000 tokens is ≤ 1.8 (the paper's 1.2 + 50 %), "
       "per transport; its drop from the shortest ≥ 1k cell is shown")
def llamacpp_decode_collapse(rows):
    data = cold_unique(rows)
    data = data[(data["runtime"] == "llamacpp") & (data["prompt_tokens"] >= 1024)]
    long_ = data[data["prompt_tokens"] >= 30000]
    if long_.empty:
        raise NotTestable("no llama.cpp cell of ≥ 30,000 prompt tokens measured")
    parts, ok = [], True
    for (tr, quant), g in long_.groupby(["transport", "quant"]):
        at = g["decode_tps"].mean()
        base = data[(data["transport"] == tr) & (data["quant"] == quant)]
        short = base[base["prompt_tokens"] == base["prompt_tokens"].min()]["decode_tps"].mean()
        ok &= at <= 1.8
        parts.append(f"{tr}/{quant}: {at:.2f} tok/s at {int(g['prompt_tokens'].max())} tokens "
                     f"(n={len(g)}) vs {short:.2f} at {int(base['prompt_tokens'].min())} ({at / short - 1:+.0%})")
    return ("supported" if ok else "contradicted", "; ".join(parts))


def ttft_exponents(rows: pd.DataFrame, min_tokens: int = 1024) -> dict[str, tuple[float, int]]:
    """Per runtime/transport/quant with ≥ 2 lengths ≥ min_tokens: the fitted k of TTFT ∝ n^k (log-log least
    squares over median TTFT per length; with two lengths, their log ratio) and how many lengths it used."""
    data = cold_unique(rows)
    data = data[data["prompt_tokens"] >= min_tokens]
    out = {}
    for key, g in data.groupby(["runtime", "transport", "quant"]):
        med = g.groupby("prompt_tokens")["ttft_s"].median().dropna()
        med = med[med > 0]
        if len(med) >= 2:
            k = np.polyfit(np.log(med.index.to_numpy(float)), np.log(med.to_numpy(float)), 1)[0]
            out["/".join(key)] = (float(k), len(med))
    return out


@claim("TTFT grows linearly with input length",
       "fitted exponent k of TTFT ∝ n^k (cold unique prompts ≥ 1k tokens, ≥ 2 lengths) within [0.8, 1.2] for "
       "every runtime/transport/quant")
def ttft_linear(rows):
    fits = ttft_exponents(rows)
    if not fits:
        raise NotTestable("no runtime measured two or more cold prompt lengths of ≥ 1k tokens")
    ok = all(0.8 <= k <= 1.2 for k, _ in fits.values())
    return ("supported" if ok else "contradicted",
            "; ".join(f"{who}: k = {k:.2f} over {n} lengths" for who, (k, n) in sorted(fits.items())))


def reuse_effect(rows: pd.DataFrame, runtime: str, workload: str = "prefix") -> tuple[float, float, int]:
    """(latency cut, hit rate, matched prompts) of `runtime`'s reuse cells against the same prompts with reuse
    off, over the prompts a cache can serve (after their set's first: prompts.can_hit); the hit rate is the
    tokens the runtime reports reused over those requests' prompt tokens."""
    warm = single_stream(rows)
    warm = warm[(warm["runtime"] == runtime) & (warm["workload"] == workload)]
    warm = warm[warm["prompt_id"].map(can_hit).astype(bool)]
    on, off = warm[warm["cache_reuse"].astype(bool)], warm[~warm["cache_reuse"].astype(bool)]
    both = set(on["prompt_id"]) & set(off["prompt_id"])
    if not both:
        raise NotTestable(f"no {workload} prompt measured by {runtime} with reuse both on and off")
    on, off = on[on["prompt_id"].isin(both)], off[off["prompt_id"].isin(both)]
    hits = kv_columns(on, {})["cached_tokens"].dropna()
    hit_rate = hits.sum() / on.loc[hits.index, "prompt_tokens"].sum() if len(hits) else float("nan")
    return 1 - on["ttft_s"].mean() / off["ttft_s"].mean(), float(hit_rate), len(both)


@claim("Prefix reuse cuts latency by ~23 % with ~80 % hit rate (Ollama)",
       "Ollama's prefix-heavy prompts after their set's first, with reuse: TTFT ≥ 15 % below the same prompts "
       "without, and ≥ 70 % of their prompt tokens reported reused")
def ollama_prefix_reuse(rows):
    others = []
    for rt in sorted(set(single_stream(rows)["runtime"]) - {"ollama"}):
        try:
            cut, hit, n = reuse_effect(rows, rt)
            others.append(f"{rt}: latency cut {cut:.0%}, hit rate {hit:.0%} ({n} prompts)")
        except NotTestable:
            pass
    try:
        cut, hit, n = reuse_effect(rows, "ollama")
    except NotTestable as exc:
        raise NotTestable(f"{exc}" + (f" (for comparison: {'; '.join(others)})" if others else "")) from None
    if not math.isfinite(hit):
        raise NotTestable("Ollama reported no reused-token count")
    verdict = "supported" if cut >= 0.15 and hit >= 0.70 else "contradicted"
    return verdict, f"ollama: latency cut {cut:.0%}, hit rate {hit:.0%} over {n} prompts" + \
        (f"; others: {'; '.join(others)}" if others else "")


@claim("MLX memory stays stable with a rotating window",
       "with max_kv_size set, MLX's KV-cache bytes at the longest prompt beyond the window are ≤ 1.1 × those at "
       "the shortest prompt that fills it")
def mlx_rotating_stable(rows):
    warm = single_stream(rows)
    mlx = warm[warm["runtime"] == "mlx"]
    bound = mlx[[extra_of(e).get("max_kv_size") is not None for e in mlx["extra"]]]
    if bound.empty:
        raise NotTestable("no MLX request ran with a rotating window (engine.mlx.max_kv_size)")
    bound = kv_columns(bound, {})
    window = int(extra_of(bound["extra"].iloc[0])["max_kv_size"])
    full = bound[bound["prompt_tokens"] + bound["max_tokens"] >= window]
    if full["prompt_tokens"].nunique() < 2:
        raise NotTestable(f"fewer than two MLX prompt lengths fill the window of {window} tokens")
    by_len = full.groupby("prompt_tokens")["kv_runtime_bytes"].max()
    ratio = by_len.iloc[-1] / by_len.iloc[0]
    return ("supported" if ratio <= 1.1 else "contradicted",
            f"window {window}: KV {by_len.iloc[0] / 2**20:.0f} MiB at {by_len.index[0]} tokens, "
            f"{by_len.iloc[-1] / 2**20:.0f} MiB at {by_len.index[-1]} (×{ratio:.2f})")


@claim("PyTorch OOMs beyond ~2k tokens",
       "a torch request of > 2,048 prompt tokens ends `oom` (the paper: MPS's 4 GB tensor cap); contradicted "
       "where torch completed such prompts without an OOM (device named)")
def torch_ooms(rows):
    torch_rows = rows[(rows["runtime"] == "torch") & (rows["phase"] == "warm")]
    long_ = torch_rows[torch_rows["prompt_tokens"] > 2048]
    if long_.empty:
        raise NotTestable("torch ran no prompt of more than 2,048 tokens")
    ooms, done = long_[long_["status"] == "oom"], long_[long_["status"] == "ok"]
    device = ", ".join(sorted(set(torch_rows["device"].dropna()))) or "?"
    if len(ooms):
        return "supported", (f"on {device}: {len(ooms)} OOM rows from {int(ooms['prompt_tokens'].min())} tokens; "
                             f"{len(done)} longer prompts completed")
    if done.empty:
        raise NotTestable(f"no torch request of > 2,048 tokens completed or failed with OOM on {device} "
                          f"(statuses: {sorted(set(long_['status']))})")
    top = done.loc[done["prompt_tokens"].idxmax()]
    return "contradicted", (f"on {device}: no OOM; completed up to {int(top['prompt_tokens'])} tokens, peak RSS "
                            f"{top['peak_rss_bytes'] / 2**30:.1f} GiB (the paper's cap is MPS's 4 GB per tensor)")


QUALITY_CLAIM = "Quantization improves efficiency without noticeable accuracy loss"


@frame_claim(QUALITY_CLAIM,
             "per quantized artifact, against the reference: ΔPPL < quality.claim.max_delta_ppl and top-1 agreement "
             "> quality.claim.min_top1 (no noticeable loss); fewer bits per weight and, where decode was measured "
             "for both in one runtime, faster decode than its format's full precision (efficiency)", "quality")
def quantization_keeps_accuracy(frame: pd.DataFrame, cfg: dict) -> list[dict]:
    """`frame`: the quality frontier (data/quality_frontier.parquet); `cfg`: the quality params block, whose
    `claim` holds the thresholds (defaults: ΔPPL < 2 %, top-1 > 90 %)."""
    thr = cfg.get("claim") or {}
    max_dppl, min_top1 = float(thr.get("max_delta_ppl", 0.02)), float(thr.get("min_top1", 0.90))
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    quants = ok[~full_precision(ok)] if len(ok) else ok
    if quants.empty:
        raise NotTestable("no quantized artifact with quality numbers (synthetic weights or none converted)")
    ref = ok[ok["reason"] == "reference"]
    ref_bpw = float(ref["bits_per_weight"].iloc[0]) if len(ref) and "bits_per_weight" in ref else float("nan")
    out = []
    for r in quants.itertuples():
        full = ok[(ok["format"] == r.format) & ok["quant"].isin(FULL_PRECISION.get(r.format, ()))]
        base_tps = full["decode_tps"].max() if "decode_tps" in full and len(full) else float("nan")
        loss_ok = r.delta_ppl < max_dppl and r.top1 > min_top1
        smaller = bool(r.bits_per_weight < ref_bpw) if not math.isnan(ref_bpw) else None
        faster = bool(r.decode_tps > base_tps) if not (pd.isna(r.decode_tps) or pd.isna(base_tps)) else None
        evidence = (f"ΔPPL {r.delta_ppl:+.2%} (threshold < {max_dppl:.0%}), top-1 {r.top1:.1%} (> {min_top1:.0%}), "
                    f"KLD {r.kld_mean:.4f}; {r.bits_per_weight:.2f} vs {ref_bpw:.2f} bits/weight"
                    + (f"; decode {r.decode_tps:.1f} vs {base_tps:.1f} tok/s ({r.format} full precision)"
                       if faster is not None else "; decode not measured in a shared cell"))
        if not loss_ok or smaller is False or faster is False:
            verdict = "contradicted"
        elif smaller is None:
            verdict = "not testable here"
        else:
            verdict = "supported"
        out.append({"claim": f"{QUALITY_CLAIM}: {r.runtime} {r.format}/{r.quant}", "verdict": verdict,
                    "evidence": evidence})
    return out


def check_all(rows: pd.DataFrame | None, extra: list[Claim] = (), *, quality: pd.DataFrame | None = None,
              cfg: dict | None = None) -> pd.DataFrame:
    """Every registered claim judged: claim, threshold, verdict, evidence. The request-row claims (plus `extra`)
    on `rows` (skipped when None); each frame claim on its frame when given (`quality`: the quality frontier,
    with `cfg` the quality params block), one row per unit it judges."""
    out = []
    for c in [*CLAIMS, *extra] if rows is not None else []:
        try:
            verdict, evidence = c.judge(rows)
        except NotTestable as exc:
            verdict, evidence = "not testable here", str(exc)
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as exc:
            verdict, evidence = "not testable here", f"not enough data ({type(exc).__name__}: {exc})"
        out.append({"claim": c.text, "threshold": c.threshold, "verdict": verdict, "evidence": evidence})
    frames = {"quality": quality}
    for fc in FRAME_CLAIMS:
        if frames.get(fc.data) is None:
            continue
        try:
            units = fc.judge(frames[fc.data], cfg or {})
        except NotTestable as exc:
            units = [{"claim": fc.text, "verdict": "not testable here", "evidence": str(exc)}]
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as exc:
            units = [{"claim": fc.text, "verdict": "not testable here",
                      "evidence": f"not enough data ({type(exc).__name__}: {exc})"}]
        out += [{"claim": u["claim"], "threshold": fc.threshold, "verdict": u["verdict"], "evidence": u["evidence"]}
                for u in units]
    return pd.DataFrame(out, columns=["claim", "threshold", "verdict", "evidence"])
