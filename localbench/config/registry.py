"""The runtimes, named once. The config schema (runtime.<name>, engine.<name>), dvc.yaml's `measure` foreach
(tests/test_dvc_deps.py), the runtime modules the harness imports and the quality stage's formats all derive
from this table."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeEntry:
    name: str                    # runtime.<name>, engine.<name>, measure@<name>
    module: str                  # localbench/runtimes/<module>.py
    formats: tuple[str, ...]     # artifact formats it loads (models/<format>/); () = no artifact
    scores: tuple[str, ...] = ()  # formats whose quality (perplexity, KL) the quality stage evaluates with it


RUNTIMES: dict[str, RuntimeEntry] = {e.name: e for e in (
    RuntimeEntry("torch", "torch_runtime", ("hf",), scores=("hf",)),
    RuntimeEntry("llamacpp", "llamacpp", ("gguf",), scores=("gguf",)),
    RuntimeEntry("mlx", "mlx", ("mlx",), scores=("mlx",)),
    RuntimeEntry("ollama", "ollama", ("gguf",)),
    RuntimeEntry("mlc", "mlc", ("mlc",), scores=("mlc",)),
    RuntimeEntry("endpoint", "endpoint", ()),
    RuntimeEntry("reference", "reference", ()),
)}
FORMAT_RUNTIME = {fmt: e.name for e in RUNTIMES.values() for fmt in e.scores}   # who scores each format's quality
