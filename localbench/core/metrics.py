"""Per-request metrics, each defined once, from client-side timestamps (DESIGN.md, vLLM's definitions).

Input: the send time and, per chunk, its arrival time (perf_counter_ns) and the tokens it carries.
A chunk carrying k tokens counts as k tokens arriving at its arrival time (k-1 gaps of zero).
Where an energy counter is read (localbench.measure.energy), its readings in joules at the send, the first token
and the last token give the energy metrics (board or package energy, idle included: the window's idle power is
reported beside them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

NS = 1e-9


@dataclass(frozen=True)
class Timeline:
    """What the harness recorded for one request."""
    sent_ns: int
    arrivals_ns: Sequence[int]       # arrival of each chunk with non-empty content
    tokens_in_chunk: Sequence[int]   # tokens each chunk carries
    prompt_tokens: int
    output_tokens: int               # from the runtime's usage report, never the chunk count
    energy_j: Sequence[float] = ()   # counter readings at send, first token, last token (empty: no counter)


METRICS: dict[str, Callable[[Timeline], float | list[float] | None]] = {}


def metric(fn):
    """Register a per-request metric under its function name."""
    METRICS[fn.__name__] = fn
    return fn


@metric
def ttft_s(t: Timeline) -> float | None:
    """TTFT = first chunk with content received - request sent."""
    return (t.arrivals_ns[0] - t.sent_ns) * NS if t.arrivals_ns else None


@metric
def e2e_s(t: Timeline) -> float | None:
    """e2e latency = last chunk received - request sent."""
    return (t.arrivals_ns[-1] - t.sent_ns) * NS if t.arrivals_ns else None


@metric
def decode_tps(t: Timeline) -> float | None:
    """Decode throughput = (output_tokens - 1) / (e2e - TTFT)."""
    if not t.arrivals_ns or t.output_tokens < 2:
        return None
    span = (t.arrivals_ns[-1] - t.arrivals_ns[0]) * NS
    return (t.output_tokens - 1) / span if span > 0 else None


@metric
def tpot_s(t: Timeline) -> float | None:
    """TPOT = (e2e - TTFT) / (output_tokens - 1), the inverse of decode throughput."""
    tps = decode_tps(t)
    return 1.0 / tps if tps else None


@metric
def e2e_tps(t: Timeline) -> float | None:
    """End-to-end throughput = output_tokens / e2e."""
    e2e = e2e_s(t)
    return t.output_tokens / e2e if e2e else None


@metric
def prefill_tps(t: Timeline) -> float | None:
    """Prefill throughput = prompt_tokens / TTFT."""
    ttft = ttft_s(t)
    return t.prompt_tokens / ttft if ttft else None


@metric
def itl_s(t: Timeline) -> list[float]:
    """ITL = gaps between successive tokens; a k-token chunk adds k-1 zero gaps after the gap to it."""
    gaps: list[float] = []
    for i, (arrival, k) in enumerate(zip(t.arrivals_ns, t.tokens_in_chunk)):
        if i > 0:
            gaps.append((arrival - t.arrivals_ns[i - 1]) * NS)
        gaps.extend([0.0] * max(k - 1, 0))
    return gaps


@metric
def energy_j(t: Timeline) -> float | None:
    """Request energy = counter at the last token - counter at send (J)."""
    return t.energy_j[2] - t.energy_j[0] if len(t.energy_j) == 3 else None


@metric
def prefill_energy_j(t: Timeline) -> float | None:
    """Prefill energy = counter at the first token - counter at send (J)."""
    return t.energy_j[1] - t.energy_j[0] if len(t.energy_j) == 3 else None


@metric
def decode_j_per_token(t: Timeline) -> float | None:
    """Decode energy per output token = (counter at last token - at first token) / (output_tokens - 1)."""
    if len(t.energy_j) != 3 or t.output_tokens < 2:
        return None
    return (t.energy_j[2] - t.energy_j[1]) / (t.output_tokens - 1)


@metric
def prefill_j_per_token(t: Timeline) -> float | None:
    """Prefill energy per prompt token = prefill energy / prompt_tokens."""
    e = prefill_energy_j(t)
    return e / t.prompt_tokens if e is not None and t.prompt_tokens else None


@metric
def decode_tok_per_j(t: Timeline) -> float | None:
    """Decode tokens per joule, the inverse of decode energy per token."""
    jpt = decode_j_per_token(t)
    return 1.0 / jpt if jpt else None


def compute(t: Timeline) -> dict[str, float | list[float] | None]:
    """All registered metrics for one request."""
    return {name: fn(t) for name, fn in METRICS.items()}
