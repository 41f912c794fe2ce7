"""The measure loop for one runtime: probe, load (cold start timed), warm up, then every (prompt, trial).

Every request becomes one row; a failure is a row with a status, never a lost run. A session's requests run in
measurement windows, one per prompt length: the machine's speed is probed (localbench.core.hardware.probe)
before and after each window and around any in-window reference the runtime runs (llama-bench), so a
comparison is made inside one window and a window whose probe moved is flagged.
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
import uuid
from dataclasses import replace
from typing import Iterable

from localbench.artifacts import integrity
from localbench.config.engines import Engine
from localbench.core import hardware
from localbench.core.schema import empty_row
from localbench.core.types import Artifact, Request
from localbench.measure import loadgen
from localbench.measure.executor import classify, one_line, run_request, stop_caller
from localbench.measure.memory import PeakRSS, baseline_rss
from localbench.measure.plan import Cell
from localbench.measure.progress import Progress, summary
from localbench.measure.store import ResultStore
from localbench.runtimes import runtime_class
from localbench.runtimes.base import Runtime, Session

log = logging.getLogger(__name__)


class Measurement:
    """Runs one runtime over its artifacts and transports and appends rows to a ResultStore."""

    def __init__(self, runtime: Runtime, store: ResultStore, host: str, workload: dict, load: dict | None = None,
                 warmups: dict[int, Request] | None = None):
        self.runtime, self.store, self.host, self.load = runtime, store, host, load or {}
        self.load_summaries: list[dict] = []
        self.trials = int(workload["trials"])
        self.warmup = int(workload["warmup"])
        # warm-up prompts by length, outside the plan (warm-up leaves no cache a cell could hit): the shortest
        # warms the session up; those up to window_warmup_max_tokens warm up the window of their length
        warmups = warmups or {}
        self.warmup_request = warmups[min(warmups)] if warmups else None
        cap = int(workload.get("window_warmup_max_tokens") or 0)
        self.window_warmups = {n: r for n, r in warmups.items() if n <= cap}
        self.warmup_max_tokens = workload.get("warmup_max_tokens")     # the session warm-up's output length
        self.timeout_s = float(workload["timeout_s"])
        self.max_prompt_tokens = workload.get("max_prompt_tokens")   # longer prompts become `skipped` rows
        self.drift_probe = {"size_mib": int(workload.get("drift_probe_mib", 256)),
                            "repeats": int(workload.get("drift_probe_repeats", 5))}
        hardware.buffer(self.drift_probe["size_mib"])    # before any memory baseline: the probe is the harness's
        self.run_id = uuid.uuid4().hex[:12]
        self.probe = runtime.probe()
        self.progress = Progress(runtime.name, 0, show=False)      # run() shows one over its plan

    def base_row(self, artifact: Artifact, transport: str, cell: Cell, phase: str) -> dict:
        row = empty_row()
        row.update(run_id=self.run_id, runtime=self.runtime.name, runtime_version=self.probe.version,
                   transport=transport, device=self.probe.device,
                   weights_memory=self.probe.memory or hardware.memory_of(self.probe.device), model=artifact.model, format=artifact.format,
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
                self.progress.advance()

    def run(self, artifacts: list[Artifact], cells: list[Cell]) -> None:
        transports = list(self.runtime.settings.transports)
        only = self.runtime.settings.transport_quants     # engine.<runtime>.transport_quants
        done = self.store.done()
        sessions = [(artifact, transport, [c for c in cells if c.runs_on(artifact.quant, transport)
                                           and ResultStore.cell_key(
                        {"format": artifact.format, "quant": artifact.quant, "transport": transport,
                         "prompt_id": c.prompt_id, "trial": c.trial, "phase": "warm",
                         "cache_reuse": c.request.reuse_cache}) not in done])
                    for artifact in artifacts for transport in transports
                    if artifact.quant in only.get(transport, [artifact.quant])]
        self.progress = Progress(f"measure@{self.runtime.name}", sum(len(todo) for *_, todo in sessions))
        try:
            for artifact, transport, todo in sessions:
                if not todo and not (transport != "inprocess" and self.load_pending(artifact, transport)):
                    continue
                self.progress.at(f"{artifact.format}/{artifact.quant} {transport}")
                started, before = time.monotonic(), len(self.store.rows)
                todo = self.skip_long(artifact, transport, todo)
                if not todo and not (transport != "inprocess" and self.load_pending(artifact, transport)):
                    pass
                elif not self.probe.available:
                    self.fail_all(artifact, transport, todo, "unavailable", self.probe.reason)
                elif transport not in self.runtime.transports:
                    self.fail_all(artifact, transport, todo, "unsupported",
                                  f"{self.runtime.name} has no {transport!r} transport; fix "
                                  f"engine.{self.runtime.name}.transports")
                else:
                    self.run_session(artifact, transport, todo, cells, done)
                self.progress.say(summary(f"{self.runtime.name}/{transport} {artifact.format} {artifact.quant}",
                                          self.store.rows[before:], time.monotonic() - started))
        finally:
            self.progress.close()

    def skip_long(self, artifact: Artifact, transport: str, todo: list[Cell]) -> list[Cell]:
        """Cells whose prompt exceeds workload.max_prompt_tokens (a runtime's per-request time budget here)
        become `skipped` rows with the reason; the rest is returned."""
        limit = self.max_prompt_tokens
        if not limit:
            return todo
        over = [c for c in todo if len(c.request.prompt_ids) > int(limit)]
        if over:
            self.fail_all(artifact, transport, over, "skipped",
                          f"prompt longer than engine.{self.runtime.name}.workload.max_prompt_tokens={limit} "
                          f"(this runtime's per-request time budget on this machine); not run")
        return [c for c in todo if len(c.request.prompt_ids) <= int(limit)]

    def run_session(self, artifact: Artifact, transport: str, todo: list[Cell], plan: list[Cell],
                    done: set) -> None:
        log.info("%s/%s: loading %s %s", self.runtime.name, transport, artifact.format, artifact.quant)
        bad = integrity.problem(artifact)         # missing or corrupt: caught before the runtime loads it
        if bad:
            self.fail_all(artifact, transport, todo, "error", bad)
            return
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
                if session.hung:
                    self.fail_all(artifact, transport, cells, "error", session.hung)
                    continue
                self.run_window(ctx, group, list(cells), warmups, done)
                warmups = 0
            if self.wants_load(session, artifact, transport) and not session.hung:
                self.run_load(session, artifact, transport, plan, cold_start_s)
        finally:
            if session.hung and not session.pid:
                # closing an in-process model under a thread still inside it could crash the process
                log.warning("%s/%s %s: left loaded, a request is still running in it", self.runtime.name,
                            transport, artifact.quant)
            else:
                stop_caller(session)
                session.close()

    def probe_speed(self) -> float:
        return hardware.probe(**self.drift_probe)

    def run_window(self, ctx: dict, group: int, cells: list[Cell], warmups: int, done: set) -> None:
        """Warm-ups (first window only), one unrecorded warm-up at the window's prompt length (where the
        prompt set has one), the cells of that length, then the runtime's in-window references; the machine's
        speed is probed before, between and after."""
        artifact, transport = ctx["artifact"], ctx["transport"]
        window = f"{self.run_id}/{artifact.format}/{artifact.quant}/{transport}/{group}"
        probes = [self.probe_speed()]
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        tagged = {"window": window, "probe_gbps": probes[0], "cold_start_s": ctx["cold_start_s"]}
        warm = self.warmup_request or cells[0].request
        if self.warmup_max_tokens:      # a slow backend: the cold row needs the first token, not a full answer
            warm = replace(warm, max_tokens=min(warm.max_tokens, self.warmup_max_tokens))
        for i in range(warmups):
            if ctx["session"].hung:
                break
            fields = run_request(ctx["session"], warm, self.timeout_s, ctx["rss_baseline"])
            cold = Cell("warmup" if self.warmup_request else cells[0].workload, warm.prompt_id, warm, trial=-1)
            if i == 0 and not any(k[:3] == (artifact.format, artifact.quant, transport) and k[5] == "cold"
                                  for k in done):       # one cold row per (artifact, transport), also on resume
                self.store.append({**self.base_row(artifact, transport, cold, "cold"), **fields, **tagged})
        shape = self.window_warmups.get(group)
        if shape and not (warmups and shape.prompt_id == warm.prompt_id) and not ctx["session"].hung:
            # the first request at a new length pays one-time costs (compute-buffer pages, graph shapes: +20-25 %
            # at 128 tokens on llama.cpp here) that llama-bench's own warm-up run hides: one unrecorded request
            run_request(ctx["session"], replace(shape, max_tokens=cells[0].request.max_tokens), self.timeout_s)
        for cell in cells:
            if ctx["session"].hung:
                fields = {"status": "error", "error": ctx["session"].hung}
            else:
                fields = run_request(ctx["session"], cell.request, self.timeout_s, ctx["rss_baseline"])
            self.store.append({**self.base_row(artifact, transport, cell, "warm"), **fields, **tagged})
            self.progress.advance()
        probes.append(self.probe_speed())
        references = [] if ctx["session"].hung else self.runtime.window_references(artifact,
                                                                                    [c.request for c in cells])
        if references:
            probes.append(self.probe_speed())
        self.store.append_window({"window": window, "runtime": self.runtime.name, "transport": transport,
                                  "format": artifact.format, "quant": artifact.quant, "group": group,
                                  "started_at": started, "probes_gbps": probes, "references": references})

    def load_pending(self, artifact: Artifact, transport: str) -> bool:
        """load.enabled, the quant is one load.quants names, and no sweep of it finished yet (tracked apart
        from the single-stream cells: a sweep interrupted after every cell was done still runs on resume)."""
        quants = self.load.get("quants") or []
        return (bool(self.load.get("enabled")) and not self.store.swept(artifact.format, artifact.quant, transport)
                and (not quants or artifact.quant in quants or artifact.quant == "n/a"))

    def wants_load(self, session: Session, artifact: Artifact, transport: str) -> bool:
        """Sweeps run on server sessions (they expose a loadgen `target`) with a sweep pending."""
        return session.target is not None and self.load_pending(artifact, transport)

    def run_load(self, session: Session, artifact: Artifact, transport: str, cells: list[Cell],
                 cold_start_s: float) -> None:
        """Closed-loop concurrency and open-loop rate sweeps (conf/load); one row per request, plus summaries."""
        requests = [replace(c.request, max_tokens=int(self.load["max_tokens"]), reuse_cache=False)
                    for c in cells if c.trial == 0 and not c.request.chat and c.sweep]
        requests = list({r.prompt_id: r for r in requests}.values())     # a reuse on/off pair is one prompt
        log.info("%s/%s %s: load sweeps over %d prompts", self.runtime.name, transport, artifact.quant,
                 len(requests))
        self.progress.at(f"{artifact.format}/{artifact.quant} {transport}: load sweep")
        window = f"{self.run_id}/{artifact.format}/{artifact.quant}/{transport}/load"
        probes = [self.probe_speed()]
        with PeakRSS(session.pid) as rss:
            results = loadgen.sweep(session.target, requests, self.load)
        probes.append(self.probe_speed())
        by_id = {r.prompt_id: r for r in requests}
        for result in results:
            self.load_summaries.append({"kind": "load sweep", "runtime": self.runtime.name, "transport": transport,
                                        "quant": artifact.quant,
                                        **loadgen.summarize_level(result, self.load.get("slo"))})
            for rec in result.records:
                cell = Cell("load", rec.prompt_id, by_id[rec.prompt_id], rec.index)
                self.store.append({**self.base_row(artifact, transport, cell, "load"),
                                   **loadgen.record_fields(rec, result), "cold_start_s": cold_start_s,
                                   "peak_rss_bytes": None if session.external or not session.pid else rss.peak,
                                   "window": window, "probe_gbps": probes[0]})
        self.store.append_window({"window": window, "runtime": self.runtime.name, "transport": transport,
                                  "format": artifact.format, "quant": artifact.quant, "group": "load",
                                  "probes_gbps": probes, "references": []})


def load_runtime(name: str, settings: Engine | dict) -> Runtime:
    """Runtime `name` with its settings: engine.<name> validated (localbench.config.params.engine_settings) or a
    dict of some of its keys (the rest take the schema's defaults)."""
    return runtime_class(name)(settings)
