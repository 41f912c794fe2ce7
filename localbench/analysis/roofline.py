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


def ceiling(bandwidth_gbps: float | None, weight_bytes: float | None, kv_bytes: float = 0.0) -> float:
    """Decode tok/s at the roofline: bandwidth / (weight bytes + KV bytes read per token); NaN when unknown."""
    if not bandwidth_gbps or not weight_bytes or kv_bytes != kv_bytes:
        return math.nan
    return bandwidth_gbps * 1e9 / (weight_bytes + kv_bytes)


def share(ratio: float | None) -> str:
    """A decode speed as a share of its ceiling; above 100 % is a probe failure, never a result."""
    if ratio is None or ratio != ratio:
        return "–"
    return f"{ratio:.0%}" if ratio <= 1 else f"PROBE FAILURE: {ratio:.0%} > 100 % (bandwidth under-measured or " \
                                             f"bytes miscounted), not a result"


def roofline_table(rows, artifacts, bandwidth: dict[str, float]) -> pd.DataFrame:
    """Warm decode tok/s (median over cold-cache single-stream cells) beside the ceiling bandwidth / weight
    bytes, per runtime/transport/quant and the memory its weights live in. The CPU's bandwidth is the highest
    reading of the calibrate stage's probe and of the drift probes taken around every measurement window (each
    a real read of a buffer far larger than the cache: a lower bound, so the highest is the best one)."""
    if "probe_gbps" in rows and rows["probe_gbps"].notna().any() and "cpu" in bandwidth:
        bandwidth = {**bandwidth, "cpu": max(bandwidth["cpu"], float(rows["probe_gbps"].max()))}
    warm = single_stream(rows)
    warm = warm[~warm["cache_reuse"].astype(bool)]
    sizes = {(a.format, a.quant): a.size_bytes for a in artifacts.itertuples() if pd.notna(a.size_bytes)}
    memory = warm["weights_memory"].fillna(warm["device"].map(lambda d: memory_of(d, bandwidth)))
    out = []
    for (rt, tr, fmt, q, mem), g in warm.assign(memory=memory).groupby(["runtime", "transport", "format", "quant",
                                                                         "memory"]):
        if (fmt, q) not in sizes or mem not in bandwidth:
            continue
        top = ceiling(bandwidth[mem], sizes[(fmt, q)])
        decode = g["decode_tps"].median()
        out.append({"runtime": rt, "transport": tr, "quant": q, "weights in": mem, "n": len(g),
                    "bandwidth (GB/s)": bandwidth[mem], "weights (MiB)": sizes[(fmt, q)] / 2**20,
                    "ceiling tok/s": top, "decode tok/s p50": decode, "of ceiling": share(decode / top)})
    return pd.DataFrame(out)
