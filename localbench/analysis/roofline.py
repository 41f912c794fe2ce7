"""The memory-bandwidth roofline: the decode speed no runtime can beat on a machine.

Decoding one token reads every weight once (and the KV cache held so far), so decode tokens/s <= memory
bandwidth / bytes read per token. The bandwidth is measured (localbench.core.hardware), not looked up. One
ceiling and one way of stating a share of it, used by this host's table and the multi-host comparison.
"""
from __future__ import annotations

import math

import pandas as pd

from localbench.analysis.cells import single_stream
from localbench.core.hardware import memory_of


KV_SHOWN_ABOVE = 0.05      # the weights + KV ceiling is shown where it is this much below the weights-only one


def ceiling(bandwidth_gbps: float | None, weight_bytes: float | None, kv_bytes: float = 0.0) -> float:
    """Decode tok/s at the roofline: bandwidth / (weight bytes + KV bytes read per token); NaN when unknown."""
    if not bandwidth_gbps or not weight_bytes or kv_bytes != kv_bytes:
        return math.nan
    return bandwidth_gbps * 1e9 / (weight_bytes + kv_bytes)


def kv_read(kv_per_token: float, prompt_tokens: float, max_tokens: float) -> float:
    """KV-cache bytes a decode step reads at mid-answer: kv_per_token x (prompt + output / 2)."""
    return kv_per_token * (prompt_tokens + max_tokens / 2)


def kv_matters(top, top_kv):
    """Whether the weights + KV ceiling is more than KV_SHOWN_ABOVE lower than the weights-only one (else one
    ceiling is enough); works on numbers and on Series."""
    return top_kv < top * (1 - KV_SHOWN_ABOVE)


def share(ratio: float | None) -> str:
    """A decode speed as a share of its ceiling; above 100 % is a probe failure, never a result."""
    if ratio is None or ratio != ratio:
        return "–"
    return f"{ratio:.0%}" if ratio <= 1 else f"PROBE FAILURE: {ratio:.0%} > 100 % (bandwidth under-measured or " \
                                             f"bytes miscounted), not a result"


def roofline_table(rows, artifacts, bandwidth: dict[str, float], kv_per_token: float = math.nan) -> pd.DataFrame:
    """Warm decode tok/s (median over the cold-cache single-stream requests of a prompt length) beside two
    ceilings, per runtime/transport/quant, memory and prompt length: bandwidth / weight bytes, and bandwidth /
    (weight bytes + the KV cache read per token at mid-answer, kv_read), the second
    shown where it is more than KV_SHOWN_ABOVE lower. The CPU's bandwidth is the highest reading of the calibrate
    stage's probe and of the drift probes taken around every measurement window (each a real read of a buffer far
    larger than the cache: a lower bound, so the highest is the best one)."""
    if "probe_gbps" in rows and rows["probe_gbps"].notna().any() and "cpu" in bandwidth:
        bandwidth = {**bandwidth, "cpu": max(bandwidth["cpu"], float(rows["probe_gbps"].max()))}
    warm = single_stream(rows)
    warm = warm[~warm["cache_reuse"].astype(bool)]
    sizes = {(a.format, a.quant): a.size_bytes for a in artifacts.itertuples() if pd.notna(a.size_bytes)}
    memory = warm["weights_memory"].fillna(warm["device"].map(lambda d: memory_of(d, bandwidth)))
    out = []
    for (rt, tr, fmt, q, mem, prompt, gen), g in warm.assign(memory=memory).groupby(
            ["runtime", "transport", "format", "quant", "memory", "prompt_tokens", "max_tokens"]):
        if (fmt, q) not in sizes or mem not in bandwidth:
            continue
        top = ceiling(bandwidth[mem], sizes[(fmt, q)])
        top_kv = ceiling(bandwidth[mem], sizes[(fmt, q)], kv_read(kv_per_token, prompt, gen))
        shown = kv_matters(top, top_kv)
        decode = g["decode_tps"].median()
        out.append({"runtime": rt, "transport": tr, "quant": q, "weights in": mem, "prompt": prompt, "n": len(g),
                    "bandwidth (GB/s)": bandwidth[mem], "weights (MiB)": sizes[(fmt, q)] / 2**20,
                    "ceiling tok/s": top, "decode tok/s p50": decode, "of ceiling": share(decode / top),
                    "ceiling tok/s (weights + KV)": top_kv if shown else math.nan,
                    "of ceiling (weights + KV)": share(decode / top_kv) if shown else "–"})
    return pd.DataFrame(out)
