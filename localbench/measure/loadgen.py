"""Load generator: closed loop (N clients) and open loop (arrivals at rate R), async, in one process.

Every request is timestamped with time.perf_counter_ns when it is sent and when each chunk reaches the
generator; it ends as a Record (ok, or error/timeout with a one-line reason, never an exception).
Warm-up requests run first and are discarded. `record_fields` turns a Record into the metric fields of a
request row (localbench.core.metrics), `summarize` a run into requests/s, output tok/s, achieved concurrency,
goodput against SLOs and latency percentiles.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import aiohttp
import numpy as np

from localbench.core import metrics
from localbench.core.stats import quantile
from localbench.core.types import Chunk, Request, Usage
from localbench.transport.clients import Target, astream, client_session
from localbench.transport.reference_server import precise_loop


@dataclass
class Record:
    """One measured request: send time, each chunk's arrival and token count, the usage, the outcome."""
    index: int
    prompt_id: str
    max_tokens: int
    scheduled_ns: int = 0               # when the open loop meant to send it (0 in a closed loop)
    issued_ns: int = 0                  # when the generator issued it
    sent_ns: int = 0                    # when its body was written to the socket (TTFT starts here)
    end_ns: int = 0
    arrivals_ns: list[int] = field(default_factory=list)
    tokens_in_chunk: list[int] = field(default_factory=list)
    usage: Usage | None = None
    status: str = "ok"                  # ok | error | timeout
    error: str | None = None


@dataclass
class LoadResult:
    """One closed-loop level (concurrency N) or open-loop level (rate R) and its records."""
    mode: str                           # closed | open
    concurrency: int | None
    rate: float
    burstiness: float
    records: list[Record]
    start_ns: int
    end_ns: int


async def send(client: aiohttp.ClientSession, target: Target, request: Request, index: int,
               scheduled_ns: int = 0) -> Record:
    """One request, timed per chunk on arrival; failures become the record's status and error."""
    rec = Record(index, request.prompt_id, request.max_tokens, scheduled_ns)
    chat = request.chat if target.chat is None else target.chat
    if target.text_prompt:
        request = dataclasses.replace(request, prompt_ids=())
    trace: dict[str, int] = {}
    rec.issued_ns = rec.sent_ns = time.perf_counter_ns()
    try:
        async with asyncio.timeout(target.timeout_s):
            async for item in astream(target.protocol, target.base_url, target.model, request, session=client,
                                      chat=chat, timeout_s=target.timeout_s, extra_body=target.extra_body,
                                      tokens_of=target.tokens_of, trace=trace):
                now = time.perf_counter_ns()
                if isinstance(item, Chunk):
                    if item.tokens > 0:
                        rec.arrivals_ns.append(now)
                        rec.tokens_in_chunk.append(item.tokens)
                else:
                    rec.usage = item
    except TimeoutError as exc:
        rec.status, rec.error = "timeout", str(exc) or f"request exceeded {target.timeout_s:g}s"
    except Exception as exc:  # noqa: BLE001 - every failure becomes a record
        text = str(exc).strip().splitlines()
        rec.status, rec.error = "error", f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
    rec.end_ns = time.perf_counter_ns()
    rec.sent_ns = trace.get("sent_ns", rec.issued_ns)
    return rec


async def _closed(client, target, requests, concurrency, num_requests, duration_s) -> tuple[list[Record], int, int]:
    records: list[Record] = []
    counter = itertools.count()
    start = time.perf_counter_ns()
    deadline = start + int(duration_s * 1e9) if duration_s else None

    async def worker() -> None:
        while True:
            i = next(counter)
            if i >= num_requests or (deadline and time.perf_counter_ns() >= deadline):
                return
            records.append(await send(client, target, requests[i % len(requests)], i))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(records, key=lambda r: r.index), start, time.perf_counter_ns()


async def closed_loop(target: Target, requests: Sequence[Request], concurrency: int, *, num_requests: int,
                      duration_s: float | None = None, warmup: int = 0) -> LoadResult:
    """N clients, each sending its next request when its last one ends, until num_requests or duration_s.
    The `warmup` requests (discarded) run at the level's concurrency, one a client at least, so that a server's
    one-time cost for the level's batch shape is not measured: mlx_lm.server on CUDA first took 32-34 s to answer 8
    prompts batched together, on an H200 and an H100, after warm-ups at 2 clients."""
    async with client_session(concurrency) as client:
        if warmup:
            await _closed(client, target, requests, concurrency, max(warmup, concurrency), None)
        records, start, end = await _closed(client, target, requests, concurrency, num_requests, duration_s)
    return LoadResult("closed", concurrency, math.nan, math.nan, records, start, end)


def arrival_offsets(rate: float, n: int, burstiness: float = 1.0, seed: int = 0) -> np.ndarray:
    """Send times (s from start) of n requests: gamma gaps with mean 1/rate and shape `burstiness`
    (1 = Poisson; < 1 burstier; vLLM's benchmark convention); rate = inf sends them all at once."""
    if math.isinf(rate):
        return np.zeros(n)
    gaps = np.random.default_rng(seed).gamma(burstiness, 1.0 / (rate * burstiness), size=n)
    return np.cumsum(gaps) - gaps[0]


async def open_loop(target: Target, requests: Sequence[Request], rate: float, *, num_requests: int,
                    duration_s: float | None = None, burstiness: float = 1.0, warmup: int = 0,
                    seed: int = 0) -> LoadResult:
    """Requests arrive at `rate` per second whatever is in flight, until num_requests or duration_s."""
    async with client_session() as client:
        if warmup:
            await _closed(client, target, requests, 1, warmup, None)
        offsets = arrival_offsets(rate, num_requests, burstiness, seed)
        tasks = []
        start = time.perf_counter_ns()
        for i, offset in enumerate(offsets):
            if duration_s and offset >= duration_s:
                break
            due = start + int(offset * 1e9)
            delay = due - time.perf_counter_ns()
            if delay > 0:
                await asyncio.sleep(delay * 1e-9)
            tasks.append(asyncio.create_task(send(client, target, requests[i % len(requests)], i, due)))
        records = list(await asyncio.gather(*tasks))
    return LoadResult("open", None, float(rate), float(burstiness), records, start, time.perf_counter_ns())


def run_loop(coro):
    """Run a load coroutine on the precise event loop, with the cyclic GC paused (its pauses would show
    up as client-side latency; the run's garbage is collected afterwards)."""
    gc.collect()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=precise_loop) as runner:
            return runner.run(coro)
    finally:
        gc.enable()


def concurrency_sweep(target: Target, requests: Sequence[Request], levels: Sequence[int], *, num_requests: int,
                      duration_s: float | None = None, warmup: int = 0) -> list[LoadResult]:
    """A closed loop at each concurrency level in turn; num_requests is per level."""
    return [run_loop(closed_loop(target, requests, int(n), num_requests=num_requests, duration_s=duration_s,
                            warmup=warmup)) for n in levels]


def rate_sweep(target: Target, requests: Sequence[Request], rates: Sequence[float], *, num_requests: int,
               duration_s: float | None = None, burstiness: float = 1.0, warmup: int = 0,
               seed: int = 0) -> list[LoadResult]:
    """An open loop at each arrival rate in turn (req/s; "inf" sends all at once)."""
    return [run_loop(open_loop(target, requests, float(r), num_requests=num_requests, duration_s=duration_s,
                          burstiness=burstiness, warmup=warmup, seed=seed)) for r in rates]


def sweep(target: Target, requests: Sequence[Request], load: dict) -> list[LoadResult]:
    """Both sweeps as conf/load/default.yaml describes them."""
    common = dict(duration_s=load.get("duration_s"), warmup=int(load.get("warmup", 0)))
    closed = concurrency_sweep(target, requests, load.get("concurrency") or [],
                               num_requests=int(load["closed_requests"]), **common)
    opened = rate_sweep(target, requests, load.get("rates") or [], num_requests=int(load["open_requests"]),
                        burstiness=float(load.get("burstiness", 1.0)), seed=int(load.get("seed", 0)), **common)
    return closed + opened


def timeline(rec: Record) -> metrics.Timeline | None:
    if rec.usage is None:
        return None
    return metrics.Timeline(rec.sent_ns, rec.arrivals_ns, rec.tokens_in_chunk, rec.usage.prompt_tokens,
                            rec.usage.output_tokens)


def record_fields(rec: Record, result: LoadResult) -> dict:
    """The request-row fields (schema.REQUEST_FIELDS) a record fills; merge over the harness's base row."""
    fields: dict[str, Any] = {"status": rec.status, "error": rec.error, "tokens_in_chunk": rec.tokens_in_chunk,
                              "prompt_id": rec.prompt_id, "max_tokens": rec.max_tokens, "workload": "load",
                              "concurrency": result.concurrency if result.mode == "closed" else None,
                              "rate": result.rate}
    t = timeline(rec)
    if t is not None:
        fields.update(metrics.compute(t), prompt_tokens=t.prompt_tokens, output_tokens=t.output_tokens,
                      extra=json.dumps(rec.usage.extra, default=str) if rec.usage.extra else None)
        if rec.status == "ok" and t.output_tokens != rec.max_tokens:
            fields.update(status="short", error=f"{t.output_tokens} tokens generated, {rec.max_tokens} forced")
    return fields


def summarize_level(result: LoadResult, slo: dict[str, float] | None = None) -> dict[str, Any]:
    """Requests/s, output tok/s, achieved concurrency, goodput (ok requests meeting every SLO given:
    ttft_s, tpot_s, e2e_s) per second, TTFT/TPOT/ITL/e2e percentiles over the measured window, and the
    open loop's send lag (p99 of issued - scheduled: large values mean the generator itself fell behind)."""
    slo = {k: float(v) for k, v in (slo or {}).items() if v is not None}
    wall = max(result.end_ns - result.start_ns, 1) * 1e-9
    ok = [(r, metrics.compute(t)) for r in result.records if r.status == "ok" and (t := timeline(r))]
    good = [m for _, m in ok if all((m.get(k) is not None and m[k] <= v) for k, v in slo.items())]
    out: dict[str, Any] = {
        "mode": result.mode, "concurrency": result.concurrency, "rate": result.rate,
        "burstiness": result.burstiness, "requests": len(result.records), "ok": len(ok),
        "errors": len(result.records) - len(ok), "duration_s": wall,
        "request_throughput": len(ok) / wall,
        "output_throughput": sum(r.usage.output_tokens for r, _ in ok) / wall,
        "achieved_concurrency": sum(r.end_ns - r.issued_ns for r in result.records) * 1e-9 / wall,
        "goodput": len(good) / wall,
        "goodput_fraction": len(good) / len(result.records) if result.records else math.nan,
    }
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        values = [m[name] for _, m in ok if m[name] is not None]
        out.update({f"{name[:-2]}_p{q}_s": quantile(values, q) for q in (50, 90, 99)})
    itl = [g for _, m in ok for g in m["itl_s"]]
    out.update({f"itl_p{q}_s": quantile(itl, q) for q in (50, 90, 99)})
    lag = [(r.issued_ns - r.scheduled_ns) * 1e-9 for r in result.records if r.scheduled_ns]
    out["send_lag_p99_s"] = quantile(lag, 99)     # open loop: how late the generator sent (its own bottleneck)
    return out
