"""The machine's speed, probed around every measurement window (DESIGN.md, fidelity: drift).

These machines drift by tens of percent within an hour. A short fixed probe (the median of a few
matrix-vector products over a buffer far larger than the last-level cache: decode's access pattern, on
all cores) runs before and after every window of requests and around in-window references such as
llama-bench; a window whose readings moved by more than `report.drift_tolerance` is flagged.
"""
from __future__ import annotations

import time

import numpy as np

_BUFFERS: dict[int, np.ndarray] = {}


def buffer(size_mib: int) -> np.ndarray:
    """The probe's matrix of `size_mib` MiB, allocated once per size and kept. The harness allocates it before
    it takes an in-process session's memory baseline, so the probe's memory never counts as the runtime's."""
    if size_mib not in _BUFFERS:
        _BUFFERS[size_mib] = np.ones((size_mib * 2**20 // (4 * 4096), 4096), dtype=np.float32)
    return _BUFFERS[size_mib]


def probe(size_mib: int = 256, repeats: int = 5, best: bool = False) -> float:
    """GB/s read by the median (or, with `best`, the fastest) of `repeats` float32 matrix-vector products
    over the `size_mib` MiB buffer() (a probe costs ~repeats x size / bandwidth)."""
    matrix = buffer(size_mib)
    vector = np.ones(4096, dtype=np.float32)
    matrix @ vector
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        matrix @ vector
        times.append(time.perf_counter_ns() - t0)
    return matrix.nbytes / (float(min(times) if best else np.median(times)) * 1e-9) / 1e9


def moved(readings: list[float]) -> float:
    """How far a window's probe readings moved: (max - min) / max (0 = steady; NaN without two readings)."""
    values = [r for r in readings if r and r == r]
    return (max(values) - min(values)) / max(values) if len(values) > 1 else float("nan")
