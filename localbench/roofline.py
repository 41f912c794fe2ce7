"""The memory-bandwidth roofline: the decode speed no runtime can beat on this machine.

Decoding one token reads every weight once, so decode tokens/s <= memory bandwidth / weight bytes (the
KV cache read is ignored: small at the default lengths). The bandwidth is measured here, not looked up,
with decode's own access pattern: the best of a few matrix-vector products over a matrix far larger than
any cache, with torch, on the CPU and on each accelerator torch sees (cuda, mps; MLX's Metal GPU shares
the mps figure, one unified memory).
"""
from __future__ import annotations

import time


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def read_bandwidth(device: str, size_mib: int = 512, repeats: int = 5) -> float:
    """Bytes per second read by the best of `repeats` matrix-vector products over a `size_mib` MiB matrix."""
    import torch

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
    return matrix.numel() * matrix.element_size() / best


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
