"""The types every layer speaks: an artifact, a request, what a stream yields (Sent, Chunk, Usage), a probe.

A runtime's session yields `Chunk`s (text plus how many tokens the chunk carries) and ends with one `Usage`;
the harness, never the runtime, takes the timestamps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RuntimeUnavailable(RuntimeError):
    """Raised by load() (or reported by probe()) when a runtime cannot run here; the message says why."""


@dataclass(frozen=True)
class Probe:
    """What probe() found: installed or not (and why), version, device, declared capabilities."""
    available: bool
    reason: str = ""
    version: str = ""
    device: str = ""
    memory: str = ""          # where the weights live (cpu | cuda | mps); "" = inferred from `device`
    capabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """One converted model file or folder (a row of data/artifacts.parquet)."""
    model: str
    format: str          # hf | gguf | mlx | mlc
    quant: str           # bf16, fp32, Q4_K_M, 4bit, mixed_3_6, q4f16_1 ...
    path: str
    size_bytes: int = 0
    tokenizer_path: str = ""   # HF folder with the tokenizer (for re-tokenization and chat templates)


@dataclass(frozen=True)
class Request:
    """One generation request: exact prompt token ids (and their text), forced output length."""
    prompt_id: str
    prompt_ids: tuple[int, ...]
    prompt_text: str
    max_tokens: int
    chat: bool = False          # send as chat (messages) rather than raw completion, where a server has both
    messages: tuple[dict, ...] = ()   # the chat history behind prompt_ids (chat workloads)
    reuse_cache: bool = False   # cache-reuse workloads keep the KV / prompt cache between requests


@dataclass(frozen=True)
class Chunk:
    """A piece of streamed output as it reached the client: its text and how many tokens it carries.
    `ns`: when its bytes came off the socket (perf_counter_ns; server clients that stamp their reads), else 0:
    the harness stamps it when the stream yields it."""
    tokens: int
    text: str = ""
    ns: int = 0


@dataclass(frozen=True)
class Sent:
    """When a server request's body was written to the socket (perf_counter_ns): TTFT's start for servers.
    In-process streams yield none: their boundary is the harness's stamp right before the generate call."""
    ns: int


@dataclass(frozen=True)
class Usage:
    """The runtime's own count of prompt and output tokens for one request, plus anything it reports."""
    prompt_tokens: int
    output_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)
