"""The host fingerprint and environment manifest (OS, CPU/GPU, memory, Python, package versions)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess

import psutil

# A host id the user names instead of the fingerprint (e.g. two clones on one machine standing in for two
# machines, tests/test_e2e.py); recorded in the manifest as `host_set_by_user`
HOST_ENV = "LOCALBENCH_HOST"
PACKAGES = ("torch", "transformers", "llama_cpp_python", "mlx", "mlx-cpu", "mlx-metal", "mlx-lm",
            "mlc-llm", "ollama", "openai", "httpx", "dvc", "hydra-core", "pandas", "pyarrow")


def cpu_name() -> str:
    """The CPU model string, as the OS names it."""
    if platform.system() == "Darwin":
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        return out.stdout.strip()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def gpu_name() -> str:
    """The accelerator: NVIDIA's first GPU as NVML names it (no CUDA context is made: a torch CUDA context in a
    process that then loads llama.cpp's own CUDA libraries crashed it on the lent GPU), 'Apple MPS', or ''."""
    try:
        import pynvml
        try:
            pynvml.nvmlInit()
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            return name.decode() if isinstance(name, bytes) else name
        except pynvml.NVMLError:
            pass
    except ImportError:
        pass
    if platform.system() == "Darwin":
        try:
            import torch
            return "Apple MPS" if torch.backends.mps.is_available() else ""
        except ImportError:
            pass
    return ""


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that matter for the numbers."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def manifest() -> dict:
    """Everything about this machine a reader needs to judge the numbers (+ `host_set_by_user`: LOCALBENCH_HOST)."""
    m = {
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }
    named = os.environ.get(HOST_ENV)
    if named:
        if not re.fullmatch(r"\w[\w.-]*", named):
            raise SystemExit(f"{HOST_ENV}={named!r}: a host id is a folder name (a letter, digit or '_', then "
                             "those, '.' or '-')")
        m["host_set_by_user"] = named
    return m


def fingerprint(m: dict | None = None) -> str:
    """A short stable id of the host's hardware and software (the `host` column), or the id the user set
    (LOCALBENCH_HOST)."""
    m = m or manifest()
    if m.get("host_set_by_user"):
        return m["host_set_by_user"]
    keys = ("platform", "machine", "cpu", "cpu_cores_logical", "memory_bytes", "gpu", "python")
    blob = json.dumps({k: m[k] for k in keys}, sort_keys=True)
    return f"{platform.node()}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"
