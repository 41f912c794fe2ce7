"""Does PyTorch's decode run slow for a while after each load, and what moves with it?

On both GPU leases PyTorch bf16's first requests after a load decoded at 11-15 tok/s and the later ones at 34-45
(results/vm-af51c8246a-frameworks-load/, results/vm-b18d9206dc-frameworks/): a bimodal cell. This loads the model
through the harness's own path (TorchRuntime.load, executor.run_request on the session's caller thread, the NVML
meter read at every token) `loads` times and sends 1k-token requests back to back for `seconds` after each load,
printing per request: seconds since the load ended, decode tok/s, this process's CPU use over the request (and its
busiest threads), the machine's CPU use, the GPU's SM clock, power and utilization. On an H100 (2026-12-07): the
first request after each load decoded at 10.7 and 12.6 tok/s, the later ones at 22-41, at a steady 1,980 MHz SM clock
with the machine's CPUs 93 % idle (README: the PyTorch H100 section).

    python3 benchmarks/torch_warm_phase.py MODEL_DIR [SECONDS] [LOADS] [DEVICE]   # on the GPU machine: a bf16 HF folder, cuda
"""
from __future__ import annotations

import sys
import time

import psutil

from localbench.core.types import Artifact, Request
from localbench.measure.energy import nvml_meter
from localbench.measure.executor import run_request, stop_caller
from localbench.runtimes.torch_runtime import TorchRuntime


def thread_times(proc: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in proc.threads()}


def gpu_state(handle) -> str:
    import pynvml

    if handle is None:
        return "no GPU"
    sm = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
    watts = pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3
    util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    return f"sm {sm} MHz, {watts:.0f} W, util {util} %"


def main(model_dir: str, seconds: float = 60.0, loads: int = 2, device: str = "cuda") -> None:
    import pynvml

    meter, why = nvml_meter()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0) if meter else None
    print(f"meter: {meter.name if meter else why}")
    proc = psutil.Process()
    request = Request("warm-phase", tuple(range(1000, 2024)), "", 128)
    for load in range(loads):
        start = time.perf_counter()
        session = TorchRuntime({"device": device}).load(Artifact("m", "hf", "bf16", model_dir), "inprocess")
        loaded = time.perf_counter()
        print(f"load {load + 1}: {loaded - start:.1f} s; {gpu_state(handle)}")
        while time.perf_counter() - loaded < seconds:
            threads, cpu, wall = thread_times(proc), proc.cpu_times(), time.perf_counter()
            psutil.cpu_percent(None)
            row = run_request(session, request, timeout_s=120, meter=meter)
            spent = time.perf_counter() - wall
            machine = psutil.cpu_percent(None)
            now = proc.cpu_times()
            used = (now.user - cpu.user + now.system - cpu.system) / spent
            moved = sorted(((v - threads.get(k, 0.0)) / spent, k) for k, v in thread_times(proc).items())[::-1][:3]
            busiest = ", ".join(f"{tid}:{share:.0%}" for share, tid in moved)
            print(f"  t+{wall - loaded:5.1f} s  {row['status']:>4} decode {row['decode_tps']:6.1f} tok/s  "
                  f"ttft {row['ttft_s'] * 1e3:6.1f} ms  process cpu {used:.0%} (threads {busiest})  "
                  f"machine cpu {machine:.0f} %  {gpu_state(handle)}", flush=True)
        stop_caller(session)
        session.close()


if __name__ == "__main__":
    main(sys.argv[1], *(float(a) for a in sys.argv[2:3]), *(int(a) for a in sys.argv[3:4]), *sys.argv[4:5])
