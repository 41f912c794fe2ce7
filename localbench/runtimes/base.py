"""The runtime contract (DESIGN.md): probe() -> load(artifact, transport) -> session.stream(request).

A runtime module defines one subclass of `Runtime` and registers it with `@register`. Its session yields
(servers: one `Sent` first, then) `Chunk`s and ends with one `Usage` (localbench.core.types); the harness,
never the runtime, takes the timestamps. Every optional hook is declared here with its default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from localbench.config.engines import Engine
from localbench.config.registry import RUNTIMES
from localbench.core.types import Artifact, Chunk, Probe, Request, Usage
from localbench.transport.clients import Target


class Session:
    """A loaded model. `stream` yields (servers: one Sent first, then) Chunk objects, then exactly one Usage."""

    pid: int | None = None   # process whose tree holds the model (None: this process)
    external = False         # a server this pipeline did not start: its memory is not ours to report
    target: Target | None = None   # a server the load generator can drive (None: no load sweeps)
    hung: str | None = None  # set by the harness when a request hung past its timeout: why the session is unusable

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        raise NotImplementedError

    def memory(self) -> dict[str, int]:
        """Device/framework memory in bytes the runtime reports (e.g. {'device_mem_bytes': n})."""
        return {}

    def close(self) -> None:
        pass


class Runtime:
    """A runtime module's entry: name, transports it offers, probe and load; `settings` is its typed engine.<name>."""

    name: str = ""
    transports: tuple[str, ...] = ("inprocess",)   # transports it offers (from localbench.config.registry)
    formats: tuple[str, ...] = ()          # artifact formats it can load (from localbench.config.registry)
    settings_model: type[Engine] = Engine  # the model of its settings (from localbench.config.registry)
    # the paper's tables 1-5 as this module uses the runtime (keys: quantization, kv_cache, streaming, api,
    # deployment); shown even where the runtime is not installed, beside what probe() finds
    declared: dict[str, str] = {}

    def __init__(self, settings: Engine | dict[str, Any] | None = None):
        """`settings`: engine.<name> validated already (localbench.config.params.engine_settings), or a dict of
        some of its keys (the rest take the schema's defaults)."""
        self.settings = self.settings_model.model_validate(settings or {})

    def probe(self) -> Probe:
        raise NotImplementedError

    def load(self, artifact: Artifact, transport: str) -> Session:
        raise NotImplementedError

    def window_references(self, artifact: Artifact, requests: list[Request]) -> list[dict]:
        """Reference measurements run inside a measurement window on the same file and shapes (llama-bench)."""
        return []

    def extra_measurements(self, artifacts: list[Artifact], requests: list[Request], out_dir: Path) -> list[dict]:
        """Records measured once per stage beside the per-request rows (e.g. MLX's prompt-cache files)."""
        return []


REGISTRY: dict[str, type[Runtime]] = {}


def register(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator adding a runtime to the registry under its `name` (one of localbench.config.registry's),
    with the artifact formats, transports and settings model the registry names."""
    entry = RUNTIMES[cls.name]
    cls.formats, cls.transports, cls.settings_model = entry.formats, entry.transports, entry.settings
    REGISTRY[cls.name] = cls
    return cls
