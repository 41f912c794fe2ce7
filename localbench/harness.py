"""The measure loop for one runtime: probe, load (cold start timed), warm up, then every (prompt, trial).

Every request becomes one row; a failure is a row with a status, never a lost run. Rows are appended
to a partial JSONL file as they finish, so an interrupted stage keeps them and a rerun with the same
configuration resumes where it stopped.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from localbench import loadgen, metrics
from localbench.memory import PeakRSS
from localbench.runtimes import registry
from localbench.runtimes.base import Artifact, Chunk, Request, Runtime, RuntimeUnavailable, Session, Usage
from localbench.schema import empty_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One planned request: a prompt and a trial number."""
    workload: str
    prompt_id: str
    request: Request
    trial: int


def classify(exc: BaseException) -> str:
    """The row status for an exception."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return "oom"
    if isinstance(exc, RuntimeUnavailable):
        return "unsupported"
    return "error"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def run_request(session: Session, request: Request, timeout_s: float) -> dict:
    """Send one request, timestamp each chunk on arrival, and compute the row's metric fields."""
    arrivals: list[int] = []
    tokens: list[int] = []
    usage: Usage | None = None
    fields: dict = {"status": "ok", "error": None}
    with PeakRSS(session.pid) as rss:
        sent = time.perf_counter_ns()
        try:
            for item in session.stream(request):
                now = time.perf_counter_ns()
                if isinstance(item, Usage):
                    usage = item
                elif isinstance(item, Chunk) and item.tokens > 0:
                    arrivals.append(now)
                    tokens.append(item.tokens)
                if (now - sent) * 1e-9 > timeout_s:
                    raise TimeoutError(f"request exceeded workload.timeout_s={timeout_s}")
            if usage is None:
                raise RuntimeError("the runtime reported no token usage")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            fields.update(status=classify(exc), error=one_line(exc))
    fields["peak_rss_bytes"] = rss.peak
    fields["device_mem_bytes"] = session.memory().get("device_mem_bytes")
    fields["tokens_in_chunk"] = tokens
    if usage is not None:
        timeline = metrics.Timeline(sent, arrivals, tokens, usage.prompt_tokens, usage.output_tokens)
        fields.update(metrics.compute(timeline))
        fields.update(prompt_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens,
                      extra=json.dumps(usage.extra, default=str) if usage.extra else None)
        if fields["status"] == "ok" and usage.output_tokens != request.max_tokens:
            # fewer tokens than forced: not comparable, excluded; more (llama-cpp-python finishes a character
            # split over several tokens past max_tokens): kept, the per-token metrics use the usage count
            note = f"{usage.output_tokens} tokens generated, {request.max_tokens} forced"
            fields.update(status="short" if usage.output_tokens < request.max_tokens else "ok", error=note)
    return fields


class ResultStore:
    """Append-only JSONL of finished rows, valid only for one configuration key."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self.rows: list[dict] = []
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            if lines and json.loads(lines[0]).get("key") == key:
                self.rows = [json.loads(line) for line in lines[1:] if line.strip()]
                log.info("resuming: %d rows already measured in %s", len(self.rows), self.path)
        if not self.rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"key": key}) + "\n")

    def done(self) -> set[tuple]:
        return {self.cell_key(r) for r in self.rows}

    @staticmethod
    def cell_key(row: dict) -> tuple:
        return (row["format"], row["quant"], row["transport"], row["prompt_id"], row["trial"], row["phase"])

    def append(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()


def config_key(*parts) -> str:
    """A stable hash of everything that determines the rows (settings, workload, artifacts, prompts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Measurement:
    """Runs one runtime over its artifacts and transports and appends rows to a ResultStore."""

    def __init__(self, runtime: Runtime, store: ResultStore, host: str, workload: dict, load: dict | None = None):
        self.runtime, self.store, self.host, self.load = runtime, store, host, load or {}
        self.load_summaries: list[dict] = []
        self.trials = int(workload["trials"])
        self.warmup = int(workload["warmup"])
        self.timeout_s = float(workload["timeout_s"])
        self.run_id = uuid.uuid4().hex[:12]
        self.probe = runtime.probe()

    def base_row(self, artifact: Artifact, transport: str, cell: Cell, phase: str) -> dict:
        row = empty_row()
        row.update(run_id=self.run_id, runtime=self.runtime.name, runtime_version=self.probe.version,
                   transport=transport, device=self.probe.device, model=artifact.model, format=artifact.format,
                   quant=artifact.quant, workload=cell.workload, prompt_id=cell.prompt_id,
                   prompt_tokens=len(cell.request.prompt_ids), max_tokens=cell.request.max_tokens,
                   trial=cell.trial, phase=phase, concurrency=1, rate=float("nan"),
                   cache_reuse=cell.request.reuse_cache, host=self.host,
                   started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        return row

    def fail_all(self, artifact: Artifact, transport: str, cells: Iterable[Cell], status: str, error: str) -> None:
        """One row per cell not measured yet, all with the same status and reason."""
        done = self.store.done()
        for cell in cells:
            row = {**self.base_row(artifact, transport, cell, "warm"), "status": status, "error": error}
            if ResultStore.cell_key(row) not in done:
                self.store.append(row)

    def run(self, artifacts: list[Artifact], cells: list[Cell]) -> None:
        transports = [t for t in self.runtime.settings.get("transports", self.runtime.transports)]
        done = self.store.done()
        for artifact in artifacts:
            for transport in transports:
                todo = [c for c in cells if ResultStore.cell_key(
                    {"format": artifact.format, "quant": artifact.quant, "transport": transport,
                     "prompt_id": c.prompt_id, "trial": c.trial, "phase": "warm"}) not in done]
                if not todo:
                    continue
                if not self.probe.available:
                    self.fail_all(artifact, transport, todo, "unavailable", self.probe.reason)
                elif transport not in self.runtime.transports:
                    self.fail_all(artifact, transport, todo, "unsupported",
                                  f"{self.runtime.name} has no {transport!r} transport; fix "
                                  f"engine.{self.runtime.name}.transports")
                else:
                    self.run_session(artifact, transport, todo, cells[0], done)

    def run_session(self, artifact: Artifact, transport: str, todo: list[Cell], first: Cell, done: set) -> None:
        log.info("%s/%s: loading %s %s", self.runtime.name, transport, artifact.format, artifact.quant)
        t0 = time.perf_counter_ns()
        try:
            session = self.runtime.load(artifact, transport)
        except Exception as exc:  # noqa: BLE001
            self.fail_all(artifact, transport, todo, classify(exc), one_line(exc))
            return
        cold_start_s = (time.perf_counter_ns() - t0) * 1e-9
        try:
            for i in range(self.warmup):
                fields = run_request(session, first.request, self.timeout_s)
                cold = Cell(first.workload, first.prompt_id, first.request, trial=-1)
                key = (artifact.format, artifact.quant, transport, first.prompt_id, -1, "cold")
                if i == 0 and key not in done:
                    self.store.append({**self.base_row(artifact, transport, cold, "cold"), **fields,
                                       "cold_start_s": cold_start_s})
            for cell in todo:
                fields = run_request(session, cell.request, self.timeout_s)
                self.store.append({**self.base_row(artifact, transport, cell, "warm"), **fields,
                                   "cold_start_s": cold_start_s})
            if self.wants_load(session, artifact, transport):
                self.run_load(session, artifact, transport, todo, cold_start_s)
        finally:
            session.close()

    def wants_load(self, session: Session, artifact: Artifact, transport: str) -> bool:
        """Sweeps run on server sessions (they expose a loadgen `target`), for the quants load.quants names."""
        quants = self.load.get("quants") or []
        swept = any(r["phase"] == "load" and r["quant"] == artifact.quant and r["transport"] == transport
                    for r in self.store.rows)
        return (bool(self.load.get("enabled")) and getattr(session, "target", None) is not None and not swept
                and (not quants or artifact.quant in quants or artifact.quant == "n/a"))

    def run_load(self, session: Session, artifact: Artifact, transport: str, cells: list[Cell],
                 cold_start_s: float) -> None:
        """Closed-loop concurrency and open-loop rate sweeps (conf/load); one row per request, plus summaries."""
        requests = [replace(c.request, max_tokens=int(self.load["max_tokens"]), reuse_cache=False)
                    for c in cells if c.trial == 0 and not c.request.chat]
        log.info("%s/%s %s: load sweeps over %d prompts", self.runtime.name, transport, artifact.quant,
                 len(requests))
        with PeakRSS(session.pid) as rss:
            results = loadgen.sweep(session.target, requests, self.load)
        by_id = {r.prompt_id: r for r in requests}
        for result in results:
            self.load_summaries.append({"kind": "load sweep", "runtime": self.runtime.name, "transport": transport,
                                        "quant": artifact.quant,
                                        **loadgen.summarize(result, self.load.get("slo"))})
            for rec in result.records:
                cell = Cell("load", rec.prompt_id, by_id[rec.prompt_id], rec.index)
                self.store.append({**self.base_row(artifact, transport, cell, "load"),
                                   **loadgen.record_fields(rec, result), "peak_rss_bytes": rss.peak,
                                   "cold_start_s": cold_start_s})


def load_runtime(name: str, settings: dict) -> Runtime:
    known = registry()
    if name not in known:
        raise KeyError(f"unknown runtime {name!r}; known: {sorted(known)}")
    return known[name](settings)
