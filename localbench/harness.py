"""The measure loop for one runtime: probe, load (cold start timed), warm up, then every (prompt, trial).

Every request becomes one row; a failure is a row with a status, never a lost run. Rows are appended
to a partial JSONL file as they finish, so an interrupted stage keeps them and a rerun with the same
configuration resumes where it stopped.

Boundaries (DESIGN.md, fidelity): TTFT starts when the request body is on the wire for servers (the
client's `Sent` stamp) and right before the generate call in-process. A session's requests run in
measurement windows, one per prompt length: the machine's speed is probed (localbench.drift) before and
after each window and around any in-window reference the runtime runs (llama-bench), so a comparison is
made inside one window and a window whose probe moved is flagged. Memory is the runtime's: a server's
process tree, or in-process this process's peak minus its RSS right before the load.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from localbench import drift, loadgen, metrics
from localbench.memory import PeakRSS, baseline_rss
from localbench.roofline import memory_of
from localbench.runtimes import registry
from localbench.runtimes.base import Artifact, Chunk, Request, Runtime, RuntimeUnavailable, Sent, Session, Usage
from localbench.schema import empty_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One planned request: a prompt and a trial number; `group` (the target prompt length) is its window."""
    workload: str
    prompt_id: str
    request: Request
    trial: int
    group: int = 0


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


def run_request(session: Session, request: Request, timeout_s: float, rss_baseline: int = 0) -> dict:
    """Send one request, timestamp each chunk on arrival, and compute the row's metric fields.

    `rss_baseline`: this process's RSS right before an in-process session was loaded (subtracted)."""
    arrivals: list[int] = []
    tokens: list[int] = []
    usage: Usage | None = None
    fields: dict = {"status": "ok", "error": None}
    notes: list[str] = []
    with PeakRSS(session.pid) as rss:
        sent = time.perf_counter_ns()      # in-process: the generate call starts now
        try:
            for item in session.stream(request):
                now = time.perf_counter_ns()
                if isinstance(item, Sent):
                    sent = item.ns         # servers: the request body was on the wire then
                elif isinstance(item, Usage):
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
    if not session.external:       # a server the pipeline did not start: its memory is not measured
        fields["peak_rss_bytes"] = rss.peak if session.pid else max(rss.peak - rss_baseline, 0)
    fields["device_mem_bytes"] = session.memory().get("device_mem_bytes")
    fields["tokens_in_chunk"] = tokens
    if usage is not None:
        timeline = metrics.Timeline(sent, arrivals, tokens, usage.prompt_tokens, usage.output_tokens)
        fields.update(metrics.compute(timeline))
        fields.update(prompt_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens,
                      extra=json.dumps(usage.extra, default=str) if usage.extra else None)
        if sum(tokens) != usage.output_tokens:
            notes.append(f"chunks carried {sum(tokens)} tokens, the runtime reports {usage.output_tokens}")
        if fields["status"] == "ok" and usage.output_tokens < request.max_tokens:
            fields.update(status="short", error=f"{usage.output_tokens} tokens generated, "
                                                f"{request.max_tokens} forced")
        elif usage.output_tokens > request.max_tokens:
            # llama-cpp-python finishes a character split over several tokens past max_tokens: kept, the
            # per-token metrics use the usage count
            notes.append(f"{usage.output_tokens} tokens generated, {request.max_tokens} forced")
    fields["flag"] = "; ".join(notes) or None
    return fields


class ResultStore:
    """Append-only JSONL of finished rows, valid only for one configuration key."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self.rows: list[dict] = []
        self.windows: list[dict] = []       # measurement windows: probe readings and in-window references
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            if lines and json.loads(lines[0]).get("key") == key:
                for record in (json.loads(line) for line in lines[1:] if line.strip()):
                    (self.windows if record.get("record") == "window" else self.rows).append(record)
                log.info("resuming: %d rows already measured in %s", len(self.rows), self.path)
        if not self.rows and not self.windows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"key": key}) + "\n")

    def done(self) -> set[tuple]:
        return {self.cell_key(r) for r in self.rows}

    @staticmethod
    def cell_key(row: dict) -> tuple:
        return (row["format"], row["quant"], row["transport"], row["prompt_id"], row["trial"], row["phase"])

    def append(self, row: dict) -> None:
        self.rows.append(row)
        self._write(row)

    def append_window(self, window: dict) -> None:
        self.windows.append(window)
        self._write({"record": "window", **window})

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()

    def rows_with_drift(self) -> list[dict]:
        """The rows, each with how far its window's probe moved (NaN where the window was interrupted)."""
        moved = {w["window"]: drift.moved(w["probes_gbps"]) for w in self.windows}
        return [{**r, "window_drift": moved.get(r.get("window"), float("nan"))} for r in self.rows]


def config_key(*parts) -> str:
    """A stable hash of everything that determines the rows (settings, workload, artifacts, prompts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Measurement:
    """Runs one runtime over its artifacts and transports and appends rows to a ResultStore."""

    def __init__(self, runtime: Runtime, store: ResultStore, host: str, workload: dict, load: dict | None = None,
                 warmup_request: Request | None = None):
        self.runtime, self.store, self.host, self.load = runtime, store, host, load or {}
        self.load_summaries: list[dict] = []
        self.trials = int(workload["trials"])
        self.warmup = int(workload["warmup"])
        self.warmup_request = warmup_request     # outside the plan: warm-up leaves no cache a cell could hit
        self.timeout_s = float(workload["timeout_s"])
        self.drift_probe = {"size_mib": int(workload.get("drift_probe_mib", 256)),
                            "repeats": int(workload.get("drift_probe_repeats", 5))}
        self.run_id = uuid.uuid4().hex[:12]
        self.probe = runtime.probe()

    def base_row(self, artifact: Artifact, transport: str, cell: Cell, phase: str) -> dict:
        row = empty_row()
        row.update(run_id=self.run_id, runtime=self.runtime.name, runtime_version=self.probe.version,
                   transport=transport, device=self.probe.device,
                   weights_memory=self.probe.memory or memory_of(self.probe.device), model=artifact.model, format=artifact.format,
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
                    self.run_session(artifact, transport, todo, cells, done)

    def run_session(self, artifact: Artifact, transport: str, todo: list[Cell], plan: list[Cell],
                    done: set) -> None:
        log.info("%s/%s: loading %s %s", self.runtime.name, transport, artifact.format, artifact.quant)
        rss_baseline = baseline_rss()
        t0 = time.perf_counter_ns()
        try:
            session = self.runtime.load(artifact, transport)
        except Exception as exc:  # noqa: BLE001
            self.fail_all(artifact, transport, todo, classify(exc), one_line(exc))
            return
        cold_start_s = (time.perf_counter_ns() - t0) * 1e-9
        ctx = {"session": session, "artifact": artifact, "transport": transport, "cold_start_s": cold_start_s,
               "rss_baseline": rss_baseline}
        try:
            warmups = self.warmup
            for group, cells in itertools.groupby(sorted(todo, key=lambda c: c.group), key=lambda c: c.group):
                self.run_window(ctx, group, list(cells), warmups, done)
                warmups = 0
            if self.wants_load(session, artifact, transport):
                self.run_load(session, artifact, transport, plan, cold_start_s)
        finally:
            session.close()

    def probe_speed(self) -> float:
        return drift.probe(**self.drift_probe)

    def run_window(self, ctx: dict, group: int, cells: list[Cell], warmups: int, done: set) -> None:
        """Warm-ups (first window only), the cells of one prompt length, then the runtime's in-window
        references; the machine's speed is probed before, between and after."""
        artifact, transport = ctx["artifact"], ctx["transport"]
        window = f"{self.run_id}/{artifact.format}/{artifact.quant}/{transport}/{group}"
        probes = [self.probe_speed()]
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        tagged = {"window": window, "probe_gbps": probes[0], "cold_start_s": ctx["cold_start_s"]}
        warm = self.warmup_request or cells[0].request
        for i in range(warmups):
            fields = run_request(ctx["session"], warm, self.timeout_s, ctx["rss_baseline"])
            cold = Cell("warmup" if self.warmup_request else cells[0].workload, warm.prompt_id, warm, trial=-1)
            if i == 0 and not any(k[:3] == (artifact.format, artifact.quant, transport) and k[5] == "cold"
                                  for k in done):       # one cold row per (artifact, transport), also on resume
                self.store.append({**self.base_row(artifact, transport, cold, "cold"), **fields, **tagged})
        for cell in cells:
            fields = run_request(ctx["session"], cell.request, self.timeout_s, ctx["rss_baseline"])
            self.store.append({**self.base_row(artifact, transport, cell, "warm"), **fields, **tagged})
        probes.append(self.probe_speed())
        references: list[dict] = []
        if hasattr(self.runtime, "window_references"):
            references = self.runtime.window_references(artifact, [c.request for c in cells])
            probes.append(self.probe_speed())
        self.store.append_window({"window": window, "runtime": self.runtime.name, "transport": transport,
                                  "format": artifact.format, "quant": artifact.quant, "group": group,
                                  "started_at": started, "probes_gbps": probes, "references": references})

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
        window = f"{self.run_id}/{artifact.format}/{artifact.quant}/{transport}/load"
        probes = [self.probe_speed()]
        with PeakRSS(session.pid) as rss:
            results = loadgen.sweep(session.target, requests, self.load)
        probes.append(self.probe_speed())
        by_id = {r.prompt_id: r for r in requests}
        for result in results:
            self.load_summaries.append({"kind": "load sweep", "runtime": self.runtime.name, "transport": transport,
                                        "quant": artifact.quant,
                                        **loadgen.summarize(result, self.load.get("slo"))})
            for rec in result.records:
                cell = Cell("load", rec.prompt_id, by_id[rec.prompt_id], rec.index)
                self.store.append({**self.base_row(artifact, transport, cell, "load"),
                                   **loadgen.record_fields(rec, result), "cold_start_s": cold_start_s,
                                   "peak_rss_bytes": None if session.external or not session.pid else rss.peak,
                                   "window": window, "probe_gbps": probes[0]})
        self.store.append_window({"window": window, "runtime": self.runtime.name, "transport": transport,
                                  "format": artifact.format, "quant": artifact.quant, "group": "load",
                                  "probes_gbps": probes, "references": []})


def load_runtime(name: str, settings: dict) -> Runtime:
    known = registry()
    if name not in known:
        raise KeyError(f"unknown runtime {name!r}; known: {sorted(known)}")
    return known[name](settings)
