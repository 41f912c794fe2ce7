"""How noisy are the two drift probes on this machine? Back-to-back readings with nothing else running.

A window is judged by how far its probe moved between its start and its end (localbench.measure.drift), so a probe
is only useful if back-to-back readings on an idle machine move much less than the threshold
(workload.drift_tolerance). Prints, per probe, the median, the spread of N readings and the distribution of the
move between consecutive pairs (what an idle window would read).

    .venv/bin/python benchmarks/probe_noise.py [N]
"""
from __future__ import annotations

import sys

import numpy as np

from localbench.core import hardware
from localbench.measure.drift import moved


def main(n: int = 40) -> None:
    for name, probe in (("bandwidth (GB/s)", lambda: hardware.probe(256, 5)),
                        ("matmul (GFLOP/s)", hardware.compute_probe)):
        readings = np.array([probe() for _ in range(n)])
        pairs = np.array([moved([a, b]) for a, b in zip(readings[::2], readings[1::2])])
        print(f"{name}: median {np.median(readings):.1f}, range {readings.min():.1f}-{readings.max():.1f} "
              f"({moved(list(readings)):.0%} of the max) over {n} readings; move between consecutive pairs: "
              f"median {np.median(pairs):.1%}, p90 {np.percentile(pairs, 90):.1%}, max {pairs.max():.1%} "
              f"({len(pairs)} pairs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
