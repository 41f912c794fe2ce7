"""What the GPU run carries as wheels, derived rather than listed: every distribution the code that runs on the GPU
machine imports (stages/, localbench/, benchmarks/gpu/), with what each requires, minus what that machine's
python3 already has (device_packages.txt beside this file: its `pip list --format=freeze`, probed there once),
what reaches it another way (ELSEWHERE: their requirements still count) and what never runs there (NOT_THERE). Versions come from requirements.lock.

    python benchmarks/gpu/carry.py      # prints the distributions to carry, pinned
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEVICE = Path(__file__).with_name("device_packages.txt")
# reach the GPU machine another way: not carried by this list, but what they require is
ELSEWHERE = {
    "llama-cpp-python": "built there from the pinned sdist (benchmarks/gpu/build_llamacpp.py)",
    "mlx": "carried with mlx-cuda-13 (gpu_run.MLX_WHEELS)",
    "mlx-lm": "carried with mlx-cuda-13 (gpu_run.MLX_WHEELS)",
    "gguf": "llama.cpp's own gguf-py from the carried source, on PYTHONPATH there (its converter needs that version)",
}
# never run there (a module where no registry distributes it)
NOT_THERE = {
    "mlc_llm": "no distribution on the registries: MLC's rows stay unavailable",
    "mlx-metal": "macOS only",
    "mlx-cpu": "MLX's CPU backend (it provides the module mlx here): there mlx-cuda-13 takes its place",
    "playwright": "the page's browser test (localbench/report/browser.py)",
    "dvc": "DVC does not travel: the stages run as `python stages/<stage>.py`; params are composed here",
    "vl-convert-python": "the page's renderer: the report is written where the bundles are merged, not there",
}
# what the GPU machine's python3 is, for requirement markers
TARGET = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}


def normal(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of a `name==version` file (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split(";")[0].split("==")
            out[normal(name)] = version.strip()
    return out


def code_files(root: Path = ROOT) -> list[Path]:
    """The Python files that run on the GPU machine."""
    return sorted([*(root / "stages").glob("*.py"), *(root / "localbench").rglob("*.py"),
                   *(root / "benchmarks" / "gpu").glob("*.py")])


def imported(files: list[Path]) -> set[str]:
    """Top-level names of the absolute imports in `files` that are neither the standard library nor localbench."""
    names = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "localbench"}


def distributions(modules: set[str]) -> dict[str, str]:
    """module -> the distribution installed here that provides it; a module no installed distribution provides is
    an error (it would fail here too)."""
    provided = importlib.metadata.packages_distributions()
    modules = {m for m in modules if m not in NOT_THERE}
    missing = sorted(m for m in modules if m not in provided)
    if missing:
        raise SystemExit(f"imported but not installed here: {missing} (make install first)")
    return {m: normal(provided[m][0]) for m in modules}


def requirements(dist: str) -> list[str]:
    """The distributions `dist` requires on the GPU machine (markers evaluated there, no extras)."""
    out = []
    for text in importlib.metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({**TARGET, "extra": ""}):
            out.append(normal(req.name))
    return out


def to_carry(device: dict[str, str] | None = None, lock: dict[str, str] | None = None,
             root: Path = ROOT) -> dict[str, str]:
    """name -> pinned version of every distribution the code under `root` needs there and that machine lacks."""
    device = pins(DEVICE) if device is None else device
    lock = pins(root / "requirements.lock") if lock is None else lock
    todo = sorted(set(distributions(imported(code_files(root))).values()))
    needed: set[str] = set()
    while todo:
        dist = todo.pop()
        if dist in needed or dist in device or dist in NOT_THERE:
            continue
        if dist not in ELSEWHERE:
            needed.add(dist)
        todo += requirements(dist)
    unpinned = sorted(needed - set(lock))
    if unpinned:
        raise SystemExit(f"not pinned in requirements.lock: {unpinned}")
    return {d: lock[d] for d in sorted(needed)}


if __name__ == "__main__":
    for name, version in to_carry().items():
        print(f"{name}=={version}")
