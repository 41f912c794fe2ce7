"""How noisy are the drift probes on this machine? A window is judged by how far its probe moved between its start
and its end (localbench.measure.drift), so a probe is only useful if it moves much less than the threshold
(workload.drift_tolerance) when the machine's speed did not change.

    .venv/bin/python benchmarks/probe_noise.py [N]          # the CPU probes, back-to-back readings on an idle machine
    python benchmarks/probe_noise.py --cuda [N]             # the GPU's matmul probe as a window reads it

The CPU mode prints, per probe, the median, the spread of N readings and the move between consecutive pairs (what
an idle window would read). The CUDA mode reads the GPU probe as `measure.session` does: after one second idle
(the window's idle-power reading), then after a few seconds of memory-bound work (the window's requests), N times
for each of two settings of `hardware.cuda_compute_probe`: one matmul a reading with no warm-up (before
2026-12-07), and the defaults; it prints the move of each pair and its sign (after / before - 1).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from localbench.core import hardware
from localbench.measure.drift import moved

CUDA_SETTINGS = {"one matmul a reading, no warm-up": {"warm_s": 0.0, "batches": 10, "per_batch": 1},
                 "defaults (warm-up, batches)": {}}


def cpu(n: int) -> None:
    for name, probe in (("bandwidth (GB/s)", lambda: hardware.probe(256, 5)),
                        ("matmul (GFLOP/s)", hardware.compute_probe)):
        readings = np.array([probe() for _ in range(n)])
        pairs = np.array([moved([a, b]) for a, b in zip(readings[::2], readings[1::2])])
        print(f"{name}: median {np.median(readings):.1f}, range {readings.min():.1f}-{readings.max():.1f} "
              f"({moved(list(readings)):.0%} of the max) over {n} readings; move between consecutive pairs: "
              f"median {np.median(pairs):.1%}, p90 {np.percentile(pairs, 90):.1%}, max {pairs.max():.1%} "
              f"({len(pairs)} pairs)")


def busy(seconds: float) -> None:
    """Memory-bound work on the GPU for `seconds` (matrix-vector products over 1 GiB, as decode reads weights)."""
    import torch

    matrix = torch.ones(2**28 // 4096, 4096, device="cuda")
    vector = torch.ones(4096, device="cuda")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            torch.mv(matrix, vector)
        torch.cuda.synchronize()


def cuda(n: int, busy_s: float = 3.0) -> None:
    signed: dict[str, list[float]] = {name: [] for name in CUDA_SETTINGS}
    levels: dict[str, list[float]] = {name: [] for name in CUDA_SETTINGS}
    for _ in range(n):
        for name, kw in CUDA_SETTINGS.items():      # interleaved: both settings see the same machine
            time.sleep(1.0)
            before = hardware.cuda_compute_probe(**kw)
            busy(busy_s)
            after = hardware.cuda_compute_probe(**kw)
            signed[name].append(after / before - 1)
            levels[name] += [before, after]
    for name, values in signed.items():
        moves = np.array([moved([1.0, 1.0 + v]) for v in values])
        print(f"GPU matmul, {name}: median {np.median(levels[name]) / 1e3:.0f} TFLOP/s; move over a window "
              f"(idle 1 s, probe, {busy_s:g} s busy, probe), {n} windows: median {np.median(moves):.1%}, "
              f"p90 {np.percentile(moves, 90):.1%}, max {moves.max():.1%}, over 10 %: {int((moves > 0.10).sum())}; "
              f"after/before - 1: median {np.median(values):+.1%}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--cuda"]
    count = int(args[0]) if args else (10 if "--cuda" in sys.argv else 40)
    if "--cuda" in sys.argv:
        cuda(count)
    else:
        cpu(count)
