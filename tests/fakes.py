"""Shared fakes for the tests: a scripted runtime (and one that hangs), its plan and workload, a request-row
factory, an artifact from a converter's row, and a stream collector. The reference-server fixture is in conftest."""
from __future__ import annotations

import json
import threading
import time
import numpy as np
import pandas as pd

from localbench.core.schema import empty_row
from localbench.core.types import Artifact, Chunk, Probe, Request, Usage
from localbench.measure.plan import Cell
from localbench.runtimes.base import Runtime, Session

ART = Artifact(model="m", format="fake", quant="q", path=__file__)   # any existing file


class ScriptedSession(Session):
    def __init__(self, runtime):
        self.runtime = runtime
        self.broken = False

    def stream(self, request):
        self.runtime.calls += 1
        self.runtime.seen.append(request.prompt_id)
        if self.broken:
            raise RuntimeError("generation thread died")
        if request.prompt_id in self.runtime.breaks_on:
            self.broken = True          # as mlx_lm.server after an out-of-memory prefill: every later request fails
            raise RuntimeError("stream ended without a usage report")
        if request.prompt_id in self.runtime.fail_on:
            raise RuntimeError("boom: forced failure")
        if request.prompt_id in self.runtime.interrupt_on:
            raise KeyboardInterrupt
        ballast = np.ones(self.runtime.ballast_mib * 2**18, dtype=np.float32)   # memory the "model" uses
        for _ in range(request.max_tokens):
            time.sleep(self.runtime.gap_s)
            yield Chunk(tokens=1, text="x")
        del ballast
        yield Usage(prompt_tokens=len(request.prompt_ids), output_tokens=request.max_tokens)


class ScriptedRuntime(Runtime):
    name = "scripted"
    formats = ("fake",)

    def __init__(self, settings=None, fail_on=(), interrupt_on=(), gap_s=0.001, ballast_mib=0, breaks_on=()):
        super().__init__(settings)
        self.fail_on, self.interrupt_on, self.gap_s, self.calls = set(fail_on), set(interrupt_on), gap_s, 0
        self.breaks_on = set(breaks_on)     # prompts whose failure leaves the session failing every later request
        self.ballast_mib = ballast_mib
        self.seen: list[str] = []       # prompt ids streamed, in order
        self.loads: list[str] = []      # quants loaded, in order

    def probe(self):
        return Probe(True, version="1.0", device="cpu")

    def load(self, artifact, transport):
        self.loads.append(artifact.quant)
        return ScriptedSession(self)


def plan(n=3, trials=2, max_tokens=4):
    reqs = [Request(f"p{i}", tuple(range(10 + i)), "t", max_tokens) for i in range(n)]
    return [Cell("unique", r.prompt_id, r, t, group=10 + int(r.prompt_id[1:]) // 2) for t in range(trials)
            for r in reqs]


# two fixed trials per cell, one round; drift never flags (a test that wants a flagged window patches the probe)
WL = {"min_trials": 2, "max_trials": 2, "target_rel_ci": 0.05, "cell_time_cap_s": 600, "rounds": 1, "warmup": 1,
      "timeout_s": 30, "drift_probe_mib": 8, "drift_probe_repeats": 2, "drift_tolerance": 10.0}


class HangingSession(ScriptedSession):
    """Answers prompts normally, but on artifact quant `q` never yields anything for prompt `p1` (stuck inside
    the runtime)."""
    quant = "q"

    def stream(self, request):
        if request.prompt_id == "p1" and self.quant == "q":
            self.runtime.release.wait(30)          # a native call that never returns (until the test ends)
            return
        yield from super().stream(request)


class HangingRuntime(ScriptedRuntime):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.release, self.closed = threading.Event(), []

    def load(self, artifact, transport):
        session = HangingSession(self)
        session.quant = artifact.quant
        session.close = lambda: self.closed.append(artifact.quant)
        return session


def request_row(**kw) -> dict:
    """A warm, successful single-stream request row (llama.cpp in-process Q4_K_M, 1,024 -> 32 tokens), with `kw`."""
    r = empty_row()
    r.update(runtime="llamacpp", transport="inprocess", quant="Q4_K_M", workload="unique", prompt_tokens=1024,
             max_tokens=32, cache_reuse=False, concurrency=1, phase="warm", status="ok", trial=0, prompt_id="p",
             ttft_s=1.0, decode_tps=20.0, prefill_tps=1000.0, itl_s=[0.05], peak_rss_bytes=2**20, device="cpu")
    r.update(kw)
    return r


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def artifact_of(row: dict) -> Artifact:
    """The Artifact a converter's row describes."""
    return Artifact(row["model"], row["format"], row["quant"], row["path"], row["size_bytes"], row["tokenizer_path"])


def collect(session: Session, request: Request) -> tuple[list[Chunk], Usage, float]:
    """Stream one request: (chunks, usage, seconds to the first chunk) as the harness would see them."""
    t0, ttft, chunks, usage = time.perf_counter_ns(), None, [], None
    for item in session.stream(request):
        if isinstance(item, Chunk):
            ttft = ttft or (time.perf_counter_ns() - t0) * 1e-9
            chunks.append(item)
        elif isinstance(item, Usage):
            usage = item
    assert usage is not None, "the stream ended without a Usage"
    return chunks, usage, ttft


def served_row(runtime, quant, decode, prefill, prompt_tokens=128, transport="inprocess", **kw):
    """A request row of `runtime`/`quant` at the given decode and prefill speed (128 -> 32 tokens by default)."""
    return request_row(**{"runtime": runtime, "transport": transport, "quant": quant, "prompt_tokens": prompt_tokens,
                          "decode_tps": decode, "prefill_tps": prefill, "ttft_s": prompt_tokens / prefill, "e2e_s": 1.0,
                          "itl_s": [1 / decode] * 31, "cold_start_s": 0.3, "window": "w1", "peak_rss_bytes": None,
                          "device": None, "trial": None, "prompt_id": None, **kw})


def reuse_rows(runtime: str, t_off: float, t_on: float, cached: int, prompt: int = 1000) -> list[dict]:
    """A set of 3 prefix prompts, reuse off and on; the first (it primes the cache) misses either way."""
    out = []
    for i in range(3):
        for on in (False, True):
            hit = on and i > 0
            extra = {"cached_tokens": cached if hit else 0} if runtime != "none" else {}
            out.append(request_row(runtime=runtime, transport="server", workload="prefix", prompt_id=f"prefix-{prompt}-{i}",
                           prompt_tokens=prompt, cache_reuse=on, ttft_s=t_on if hit else t_off,
                           extra=json.dumps(extra)))
    return out
