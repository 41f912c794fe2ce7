"""Artifacts on disk: their size, and checked before a runtime loads them: present, and (single-file artifacts such as GGUF) the same
bytes the convert stage wrote, by the sha256 it recorded in the artifact's artifact.json.

Folders (HF, MLX, MLC) are checked for presence only: hashing gigabytes of shards before every load would
cost more than it catches.
"""
from __future__ import annotations

import json
from pathlib import Path

from localbench.artifacts.sources import sha256_of
from localbench.core.types import Artifact


def record(row: dict, target: Path) -> dict:
    """The artifact.json row with the sha256 of a single-file artifact added (folders: unchanged)."""
    target = Path(target)
    if row.get("status") == "ok" and target.is_file():
        return {**row, "sha256": sha256_of(target)}
    return row


def problem(artifact: Artifact) -> str | None:
    """Why `artifact` must not be loaded (missing, or its bytes changed since conversion), else None."""
    if artifact.format == "server" or not artifact.path:
        return None                                   # a server address, not a file
    path = Path(artifact.path)
    if not path.exists():
        return (f"artifact missing: {path} does not exist (deleted after conversion?); rerun "
                f"`dvc repro convert-{artifact.format}` to rebuild it")
    meta = path.parent / "artifact.json"
    expected = json.loads(meta.read_text()).get("sha256") if meta.is_file() and path.is_file() else None
    if expected and sha256_of(path) != expected:
        return (f"corrupt artifact: sha256 of {path} differs from the one recorded at conversion "
                f"({expected[:12]}...); rerun `dvc repro convert-{artifact.format}` (or `dvc checkout`)")
    return None


def dir_size(path: Path) -> int:
    """Bytes on disk of a file or of every file under a folder."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
