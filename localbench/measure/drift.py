"""The machine's speed around every measurement window (DESIGN.md, fidelity: drift).

These machines drift by tens of percent within an hour. A short fixed probe (localbench.core.hardware.probe)
runs before and after every window of requests and around in-window references such as llama-bench; a window
whose readings moved by more than `report.drift_tolerance` is flagged.
"""
from __future__ import annotations


def moved(readings: list[float]) -> float:
    """How far a window's probe readings moved: (max - min) / max (0 = steady; NaN without two readings)."""
    values = [r for r in readings if r and r == r]
    return (max(values) - min(values)) / max(values) if len(values) > 1 else float("nan")


def window_drift(window: dict | None) -> float:
    """A window record's move: its matmul probe's (older records: the bandwidth probe's); NaN without one."""
    if not window:
        return float("nan")
    if "drift" in window:
        return float(window["drift"])
    return moved(window.get("probes_gflops") or window.get("probes_gbps") or [])
