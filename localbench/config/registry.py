"""The runtimes, named once. The config schema (runtime.<name>, engine.<name>), dvc.yaml's `measure` foreach
(tests/test_dvc_deps.py), the runtime modules the harness imports, the settings model each runtime receives, the
transports it offers and the quality stage's formats all derive from this table."""
from __future__ import annotations

from dataclasses import dataclass

from localbench.config.engines import (
    EndpointEngine,
    Engine,
    LlamacppEngine,
    MlcEngine,
    MlxEngine,
    OllamaEngine,
    ReferenceEngine,
    TorchEngine,
)


@dataclass(frozen=True)
class RuntimeEntry:
    name: str                    # runtime.<name>, engine.<name>, measure@<name>
    module: str                  # localbench/runtimes/<module>.py
    formats: tuple[str, ...]     # artifact formats it loads (models/<format>/); () = no artifact
    settings: type[Engine]       # the model of engine.<name> (localbench.config.engines), what the runtime receives
    scores: tuple[str, ...] = ()  # formats whose quality (perplexity, KL) the quality stage evaluates with it

    @property
    def transports(self) -> tuple[str, ...]:
        """The transports the runtime offers: its settings' `transports` default."""
        return tuple(self.settings.model_fields["transports"].default)


RUNTIMES: dict[str, RuntimeEntry] = {e.name: e for e in (
    RuntimeEntry("torch", "torch_runtime", ("hf",), TorchEngine, scores=("hf",)),
    RuntimeEntry("llamacpp", "llamacpp", ("gguf",), LlamacppEngine, scores=("gguf",)),
    RuntimeEntry("mlx", "mlx", ("mlx",), MlxEngine, scores=("mlx",)),
    RuntimeEntry("ollama", "ollama", ("gguf",), OllamaEngine),
    RuntimeEntry("mlc", "mlc", ("mlc",), MlcEngine, scores=("mlc",)),
    RuntimeEntry("endpoint", "endpoint", (), EndpointEngine),
    RuntimeEntry("reference", "reference", (), ReferenceEngine),
)}
FORMAT_RUNTIME = {fmt: e.name for e in RUNTIMES.values() for fmt in e.scores}   # who scores each format's quality
