"""The memory-bandwidth roofline: the decode speed no runtime can beat on this machine.

Decoding one token reads every weight once, so decode tokens/s <= memory bandwidth / weight bytes (the
KV cache read is ignored: small at the default lengths). The bandwidth is measured here, not looked up,
with decode's own access pattern: the best of a few matrix-vector products over a matrix far larger than
any cache, on every core (the threads a runtime uses), with torch and with numpy's BLAS (the higher of the
two: a slow kernel under-measures, and a ceiling must never be too low), on the CPU and on each accelerator
torch sees (cuda, mps; MLX's Metal GPU shares the mps figure, one unified memory).
"""
from __future__ import annotations

import os
import time


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def read_bandwidth(device: str, size_mib: int = 512, repeats: int = 5) -> float:
    """Bytes per second read by the best of `repeats` matrix-vector products over a `size_mib` MiB matrix
    (on the CPU: all cores, the better of torch's and numpy's kernels)."""
    import torch

    if device == "cpu":
        from localbench import drift

        torch.set_num_threads(os.cpu_count() or 1)
        best_numpy = drift.probe(size_mib, repeats, best=True) * 1e9
    else:
        best_numpy = 0.0
    matrix = torch.ones(size_mib * 2**20 // (4 * 4096), 4096, dtype=torch.float32, device=device)
    vector, out = torch.ones(4096, device=device), torch.empty(matrix.shape[0], device=device)
    torch.mv(matrix, vector, out=out)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        torch.mv(matrix, vector, out=out)
        _sync(device)
        best = min(best, (time.perf_counter_ns() - t0) * 1e-9)
    return max(matrix.numel() * matrix.element_size() / best, best_numpy)


def devices() -> list[str]:
    """The memories to measure: the host's, plus the accelerator torch can reach."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def measure(size_mib: int = 512, repeats: int = 5) -> dict[str, float]:
    """{memory: GB/s} for every device torch sees."""
    return {d: read_bandwidth(d, size_mib, repeats) / 1e9 for d in devices()}


def memory_of(device: str) -> str:
    """Which measured memory a runtime's device string reads its weights from."""
    d = str(device).lower()
    if "cuda" in d:
        return "cuda"
    if "mps" in d or "gpu" in d or "metal" in d:
        return "mps"
    return "cpu"


def table(rows, artifacts, bandwidth: dict[str, float]):
    """Warm decode tok/s (median over cold-cache single-stream cells) beside the ceiling bandwidth / weight
    bytes, per runtime/transport/quant and the memory its weights live in. The CPU's bandwidth is the highest
    reading of the calibrate stage's probe and of the drift probes taken around every measurement window (each
    a real read of a buffer far larger than the cache: a lower bound, so the highest is the best one). A ratio
    above 100 % is printed as a probe failure (bandwidth under-measured or bytes miscounted), never a result."""
    import pandas as pd

    from localbench.cells import single_stream

    if "probe_gbps" in rows and rows["probe_gbps"].notna().any() and "cpu" in bandwidth:
        bandwidth = {**bandwidth, "cpu": max(bandwidth["cpu"], float(rows["probe_gbps"].max()))}
    warm = single_stream(rows)
    warm = warm[~warm["cache_reuse"].astype(bool)]
    sizes = {(a.format, a.quant): a.size_bytes for a in artifacts.itertuples() if pd.notna(a.size_bytes)}
    memory = warm["weights_memory"].fillna(warm["device"].map(memory_of))
    out = []
    for (rt, tr, fmt, q, mem), g in warm.assign(memory=memory).groupby(["runtime", "transport", "format", "quant",
                                                                         "memory"]):
        if (fmt, q) not in sizes or mem not in bandwidth:
            continue
        ceiling = bandwidth[mem] * 1e9 / sizes[(fmt, q)]
        decode = g["decode_tps"].median()
        ratio = decode / ceiling
        out.append({"runtime": rt, "transport": tr, "quant": q, "weights in": mem, "n": len(g),
                    "bandwidth (GB/s)": bandwidth[mem], "weights (MiB)": sizes[(fmt, q)] / 2**20,
                    "ceiling tok/s": ceiling, "decode tok/s p50": decode,
                    "of ceiling": f"{ratio:.0%}" if ratio <= 1 else
                    f"PROBE FAILURE: {ratio:.0%} > 100 % (bandwidth under-measured), not a result"})
    return pd.DataFrame(out)
