"""Hardware facts, each defined once: which memory a device reads its weights from, the KV-cache bytes a token
adds, and the memory-bandwidth probe (decode's access pattern: matrix-vector products over a buffer far larger
than the last-level cache, on all cores).

The probe serves two callers: the roofline (`read_bandwidth`: the best of torch's and numpy's kernels, per device
torch sees) and the drift probe around every measurement window (`probe`: numpy, median of a few products). A
compute-bound probe (`compute_probe`: a fixed small float32 matmul) sits beside it: prefill is compute-bound, and
on these shared VMs the bandwidth reading swings by ~30 % between back-to-back probes while the matmul's stays
within ~10 % (benchmarks/probe_noise.py), so a window is judged by the matmul's.
On a CUDA host `python -m localbench.core.hardware check [OUT.json]` puts a device-to-device copy beside the
probe (`copy_check`: the two should agree; benchmarks/gpu_run.py keeps it in the bundle's roofline.json).
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from localbench.core.types import RuntimeUnavailable

DTYPE_BYTES = {"F16": 2, "f16": 2, "fp16": 2, "bf16": 2, "BF16": 2, "float16": 2, "bfloat16": 2,
               "fp32": 4, "F32": 4, "float32": 4}
FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}   # a float artifact's quant -> its dtype
# an HF artifact quantized weight-only by torchao (localbench/artifacts/converters/hf.py) -> its torchao config
TORCHAO_QUANTS = {"int8": "Int8WeightOnlyConfig", "int4": "Int4WeightOnlyConfig"}


def hf_dtype(quant: str, path: str) -> str:
    """The torch dtype an HF artifact loads with: a float artifact's own, a torchao one's unquantized dtype (its
    config.json `dtype`: embeddings, norms and activations stay at it)."""
    if quant in FLOAT_DTYPES:
        return FLOAT_DTYPES[quant]
    if quant in TORCHAO_QUANTS:
        import json
        from pathlib import Path

        config = json.loads((Path(path) / "config.json").read_text())
        return str(config.get("dtype") or config.get("torch_dtype") or "float32")
    raise ValueError(f"HF quant {quant!r} is not one of {sorted(FLOAT_DTYPES) + sorted(TORCHAO_QUANTS)}")
ACCELERATORS = ("cuda", "mps")


def torch_device(wanted: str) -> str:
    """'auto' -> cuda, else mps, else cpu; an explicit device must be available (else RuntimeUnavailable)."""
    import torch
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if wanted == "auto":
        return "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    if not available.get(wanted):
        raise RuntimeUnavailable(f"torch device {wanted!r} is not available here; set engine.torch.device=auto")
    return wanted


def memory_of(device: str, bandwidth: dict[str, float] | None = None) -> str | None:
    """Which memory (cpu | cuda | mps) a runtime's device string reads its weights from; None for no device.
    A bare 'gpu' (llama.cpp's probe on CUDA and Metal builds alike) is the host's one accelerator memory: the
    one measured in `bandwidth` when given, else Metal's on macOS and CUDA's elsewhere."""
    d = str(device or "").lower()
    if not d:
        return None
    if "cuda" in d:
        return "cuda"
    if "mps" in d or "metal" in d:
        return "mps"
    if "gpu" in d:
        if bandwidth is not None:
            return next((m for m in ACCELERATORS if m in bandwidth), None)
        return "mps" if sys.platform == "darwin" else "cuda"
    return "cpu"


def kv_bytes_per_token(config: dict, bytes_per_value: float = 2) -> float:
    """layers x KV heads x head dim x 2 (K and V) x bytes per value: the KV cache one token adds, from an HF
    config (KV heads default to the attention heads, as in HF); NaN when the config lacks the sizes."""
    try:
        heads = int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
        kv_heads = int(config.get("num_key_value_heads") or heads)
        layers = int(config["num_hidden_layers"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return math.nan
    return float(layers * kv_heads * head_dim * 2 * bytes_per_value)


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


def compute_probe(size: int = 256, repeats: int = 15) -> float:
    """GFLOP/s of the median of `repeats` batches of 8 float32 `size`x`size` matmuls (cache-resident: the
    cores' arithmetic, not memory; ~2 ms a batch here)."""
    a = np.ones((size, size), dtype=np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(8):
            a @ a
        times.append(time.perf_counter_ns() - t0)
    return 8 * 2 * size ** 3 / float(np.median(times))


def cuda_compute_probe(size: int = 4096, warm_s: float = 0.1, batches: int = 5, per_batch: int = 20) -> float:
    """GFLOP/s of bf16 `size`x`size` matmuls on the GPU (~0.2 ms each on an H100): the median of `batches` timed
    batches of `per_batch`, after `warm_s` of untimed ones. Timed one at a time, each with its own launch and
    synchronization, the probe moved up to 27 % between a window's two readings on an H100, batched at most 2.5 %
    (benchmarks/probe_noise.py --cuda, 5 windows each; README)."""
    import torch

    a = torch.ones((size, size), device="cuda", dtype=torch.bfloat16)
    end = time.perf_counter() + warm_s
    while True:
        for _ in range(per_batch):
            a @ a
        _sync("cuda")
        if time.perf_counter() >= end:
            break
    times = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(per_batch):
            a @ a
        _sync("cuda")
        times.append((time.perf_counter_ns() - t0) / per_batch)
    return 2 * size ** 3 / float(np.median(times))


def speed_probe(memory: str | None, size_mib: int = 256, repeats: int = 5) -> tuple[float, float]:
    """(GB/s, GFLOP/s) of the processor a runtime computes on, named by the memory its weights are read from
    (memory_of): on CUDA the GPU's own (read_bandwidth over `size_mib` on the device, cuda_compute_probe), since
    the host CPU's readings say nothing of a GPU-bound request; elsewhere probe() and compute_probe()."""
    if memory == "cuda":
        return read_bandwidth("cuda", size_mib, repeats) / 1e9, cuda_compute_probe()
    return probe(size_mib, repeats), compute_probe()


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def read_bandwidth(device: str, size_mib: int = 512, repeats: int = 5) -> float:
    """Bytes per second read by the best of `repeats` matrix-vector products over a `size_mib` MiB matrix
    (on the CPU: all cores, the better of torch's and numpy's kernels: a slow kernel under-measures, and a
    ceiling must never be too low)."""
    import torch

    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
        best_numpy = probe(size_mib, repeats, best=True) * 1e9
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
    """The memories to measure: the host's, plus the accelerator torch can reach (MLX's Metal GPU shares the
    mps figure, one unified memory)."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def measure_bandwidth(size_mib: int = 512, repeats: int = 5) -> dict[str, float]:
    """{memory: GB/s} for every device torch sees."""
    return {d: read_bandwidth(d, size_mib, repeats) / 1e9 for d in devices()}


def copy_bandwidth(size_mib: int = 4096, repeats: int = 20) -> dict[str, float]:
    """A CUDA device-to-device copy of `size_mib` MiB timed by CUDA events over `repeats` copies (after 3
    warm-ups): bytes moved (read + written), median and best seconds, and their GB/s."""
    import torch

    a = torch.rand(size_mib * 2**20 // 4, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    times.sort()
    moved = 2 * a.numel() * a.element_size()
    del a, b
    torch.cuda.empty_cache()
    median = times[len(times) // 2]
    return {"bytes_moved": moved, "median_s": median, "best_s": times[0], "gbps_median": moved / median / 1e9,
            "gbps_best": moved / times[0] / 1e9}


def copy_check(copy_mib: int = 4096, probe_mib: tuple[int, ...] = (512, 4096), repeats: int = 10) -> dict:
    """The CUDA copy bandwidth beside read_bandwidth's probe at each size (GB/s) and the ratio of the largest
    probe to the copy's median (the copy's buffers are freed before the probe runs)."""
    import torch

    copy = copy_bandwidth(copy_mib)
    probe_gbps = {f"{mib}MiB": read_bandwidth("cuda", mib, repeats) / 1e9 for mib in probe_mib}
    return {"device": torch.cuda.get_device_name(0), "copy": copy, "probe_cuda_gbps": probe_gbps,
            "probe_vs_copy": probe_gbps[f"{max(probe_mib)}MiB"] / copy["gbps_median"]}


if __name__ == "__main__":
    import json

    if len(sys.argv) < 2 or sys.argv[1] != "check":
        sys.exit("usage: python -m localbench.core.hardware check [OUT.json]   (CUDA: copy bandwidth beside the probe)")
    result = json.dumps(copy_check(), indent=1)
    print(result)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(result)
