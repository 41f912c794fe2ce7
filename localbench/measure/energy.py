"""Energy counters read around every request (DESIGN.md, metric definitions: energy).

A meter is a cumulative counter in joules: NVML's total energy consumption of the GPU the weights live on (board
energy since the driver loaded, mJ), or on CPUs RAPL's package counters under /sys/class/powercap (µJ, wrapping
at max_energy_range_uj). Where neither answers the meter is None with the reason; nothing is estimated. The
request's readings (sent, first token, last token) become the energy metrics of localbench.core.metrics; the idle
power (the counter over `idle_s` with the model loaded and no request running) is read before every window.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

POWERCAP = Path("/sys/class/powercap")


@dataclass
class Meter:
    """A cumulative energy counter: `read()` returns joules (any origin)."""
    name: str                                  # what it counts, e.g. "nvml total energy: NVIDIA H200 #0"
    read: Callable[[], float]
    info: dict = field(default_factory=dict)


def nvml_meter(index: int = 0) -> tuple[Meter | None, str]:
    """NVML's total-energy counter of GPU `index` (None and why where pynvml, the driver or the counter is missing)."""
    try:
        import pynvml
    except ImportError:
        return None, "pynvml is not installed (pip install nvidia-ml-py): no GPU energy counter"
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(handle)
    except pynvml.NVMLError as exc:
        return None, f"NVML does not answer for GPU {index} (no NVIDIA driver?): {exc}"
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as exc:
        return None, f"NVML has no total-energy counter for GPU {index} ({name}): {exc}"
    name = name.decode() if isinstance(name, bytes) else name
    return Meter(f"nvml total energy: {name} #{index}",
                 lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) * 1e-3), ""


def rapl_meter(root: Path = POWERCAP) -> tuple[Meter | None, str]:
    """The sum of RAPL's package counters (intel-rapl:N), each unwrapped at its max_energy_range_uj."""
    if not root.is_dir():
        return None, f"no RAPL: {root} is absent on this machine (no CPU energy counter)"
    packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    try:
        zones = [(p / "energy_uj", int((p / "max_energy_range_uj").read_text())) for p in packages]
        last = [int(f.read_text()) for f, _ in zones]
    except OSError as exc:
        return None, f"RAPL counters under {root} are not readable: {exc.strerror or exc} (run as root)"
    if not zones:
        return None, f"no RAPL package zone (intel-rapl:N) under {root}"
    total = [0]

    def read() -> float:
        for i, (f, wrap) in enumerate(zones):
            now = int(f.read_text())
            total[0] += (now - last[i]) % (wrap + 1)
            last[i] = now
        return total[0] * 1e-6

    return Meter(f"rapl package energy ({len(zones)} package{'s' * (len(zones) > 1)})", read), ""


def meter_for(memory: str, gpu_index: int = 0) -> tuple[Meter | None, str]:
    """The counter of the memory the weights are read from: cuda -> NVML, cpu -> RAPL; else None and why."""
    if memory == "cuda":
        return nvml_meter(gpu_index)
    if memory == "cpu":
        return rapl_meter()
    return None, f"no energy counter is read for {memory!r} (Apple's powermetrics needs root and is not wired in)"


def idle_power_w(meter: Meter, seconds: float) -> float:
    """Average power over `seconds` with nothing running (W)."""
    t0, e0 = time.perf_counter(), meter.read()
    time.sleep(seconds)
    return (meter.read() - e0) / (time.perf_counter() - t0)


def resolution_s(meter: Meter, seconds: float = 0.5) -> float:
    """The counter's update interval: the median time between changes of its value while polled for `seconds`
    (NaN if it changed fewer than 3 times). Energy over a span much shorter than this is not resolved."""
    changes, last, end = [], meter.read(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        now = meter.read()
        if now != last:
            changes.append(time.perf_counter())
            last = now
    gaps = sorted(b - a for a, b in zip(changes, changes[1:]))
    return gaps[len(gaps) // 2] if len(gaps) >= 2 else float("nan")
