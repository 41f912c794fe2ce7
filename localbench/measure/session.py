"""The measure loop for one runtime: probe, then rounds of load (cold start timed), warm-up, one window of trials.

Every request becomes one row; a failure is a row with a status, never a lost run. Which trials run when is the
schedule's (localbench.measure.schedule): each round loads every session that still has trials to run, in
alternating order, and runs them as one measurement window, lengths interleaved in a seeded random order. The
machine's speed is probed before and after each window and around any in-window reference the runtime runs
(llama-bench); a window whose matmul probe moved beyond workload.drift_tolerance is re-run once, and a window
that moved is flagged (its rows stay, outside every verdict). A session that fails a request and then cannot answer
one token ends its window with that trial: it is loaded again next round for the trials it did not run.
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
import time
import uuid
from dataclasses import replace
from typing import Iterable

from localbench.artifacts import integrity
from localbench.config.engines import Engine
from localbench.core import hardware
from localbench.core.schema import empty_row
from localbench.core.types import Artifact, Request
from localbench.measure import drift, energy, loadgen, schedule
from localbench.measure.executor import classify, one_line, run_request, stop_caller
from localbench.measure.memory import PeakRSS, baseline_rss
from localbench.measure.plan import Cell
from localbench.measure.progress import Progress, summary
from localbench.measure.store import ResultStore
from localbench.runtimes import runtime_class
from localbench.runtimes.base import Runtime, Session

log = logging.getLogger(__name__)
FAILED = ("error", "timeout", "oom")     # a request that failed inside the session (not `short`: it answered)


class Measurement:
    """Runs one runtime over its artifacts and transports and appends rows to a ResultStore."""

    def __init__(self, runtime: Runtime, store: ResultStore, host: str, workload: dict, load: dict | None = None,
                 warmups: dict[int, Request] | None = None):
        self.runtime, self.store, self.host, self.load = runtime, store, host, load or {}
        self.load_summaries: list[dict] = []
        self.rule = schedule.Rule.of(workload)
        self.seed = workload.get("seed", 0)
        self.drift_tolerance = float(workload["drift_tolerance"])
        self.stops: list[dict] = []             # per cell: n and why it stopped (extra.json "cells")
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
        self.run_id = uuid.uuid4().hex[:12]
        self.probe = runtime.probe()
        self.memory = self.probe.memory or hardware.memory_of(self.probe.device or "cpu")   # where the weights are read
        if self.memory != "cuda":
            hardware.buffer(self.drift_probe["size_mib"])    # before any memory baseline: the probe is the harness's
        self.idle_power_s = float(workload.get("idle_power_s", 1.0))
        self.meter, reason = energy.meter_for(self.memory)
        self.energy = ({"meter": self.meter.name, "resolution_s": energy.resolution_s(self.meter),
                        "idle_power_s": self.idle_power_s} if self.meter else {"meter": None, "reason": reason})
        self.progress = Progress(runtime.name, 0, show=False)      # run() shows one over its plan

    def base_row(self, artifact: Artifact, transport: str, cell: Cell, phase: str) -> dict:
        row = empty_row()
        row.update(run_id=self.run_id, runtime=self.runtime.name, runtime_version=self.probe.version,
                   transport=transport, device=self.probe.device,
                   weights_memory=self.memory, model=artifact.model, format=artifact.format,
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
        """Every session's cells in rounds (localbench.measure.schedule): each round loads each session once,
        in alternating order (A B … then … B A), and runs the next trials of the cells not stopped yet."""
        transports = list(self.runtime.settings.transports)
        only = self.runtime.settings.transport_quants     # engine.<runtime>.transport_quants
        sessions = [(artifact, transport, [c for c in cells if c.runs_on(artifact.quant, transport)])
                    for artifact in artifacts for transport in transports
                    if artifact.quant in only.get(transport, [artifact.quant])]
        self.progress = Progress(f"measure@{self.runtime.name}", sum(
            len({(c.series, c.trial) for c in todo if c.fixed or c.trial < self.rule.min_trials})
            for *_, todo in sessions))
        try:
            for artifact, transport, todo in sessions:
                todo[:] = self.skip_long(artifact, transport, todo)
                if not todo:
                    continue
                reason = (self.probe.reason if not self.probe.available else
                          f"{self.runtime.name} has no {transport!r} transport; fix engine.{self.runtime.name}."
                          f"transports" if transport not in self.runtime.transports else None)
                if reason:
                    status = "unavailable" if not self.probe.available else "unsupported"
                    self.fail_all(artifact, transport, [c for c in todo if c.trial == 0], status, reason)
                    todo.clear()
            for round_ in itertools.count():
                ran = False
                for artifact, transport, todo in sessions if round_ % 2 == 0 else sessions[::-1]:
                    units = self.units_for(artifact, transport, todo)
                    # a sweep is tried in the first round only (a session without a load-generator target has none)
                    sweep = (round_ == 0 and transport != "inprocess" and bool(todo)
                             and self.load_pending(artifact, transport))
                    if not units and not sweep:
                        continue
                    ran = True
                    self.progress.at(f"{artifact.format}/{artifact.quant} {transport} (round {round_ + 1})")
                    started, before = time.monotonic(), len(self.store.rows)
                    self.run_session(artifact, transport, units, todo, round_)
                    self.progress.say(summary(f"{self.runtime.name}/{transport} {artifact.format} {artifact.quant} "
                                              f"round {round_ + 1}", self.store.rows[before:],
                                              time.monotonic() - started))
                if not ran:
                    break
            self.stops = [self.stop_record(artifact, transport, todo) for artifact, transport, todo in sessions]
            self.stops = [s for group in self.stops for s in group]
        finally:
            self.progress.close()

    def session_rows(self, artifact: Artifact, transport: str) -> list[dict]:
        """This session's warm rows so far, each with `drift_flag` from its window."""
        flagged = {w["window"] for w in self.store.windows if w.get("flagged")}
        return [{**r, "drift_flag": r.get("window") in flagged} for r in self.store.rows
                if r["phase"] == "warm" and (r["format"], r["quant"], r["transport"])
                == (artifact.format, artifact.quant, transport)]

    def by_series(self, artifact: Artifact, transport: str, todo: list[Cell]) -> dict[tuple, tuple[list, list]]:
        """Per cell (Cell.series): its planned requests and this session's rows of them so far."""
        series: dict[tuple, tuple[list, list]] = {}
        key_of = {}
        for c in todo:
            series.setdefault(c.series, ([], []))[0].append(c)
            key_of[(c.prompt_id, c.trial, c.request.reuse_cache)] = c.series
        for r in self.session_rows(artifact, transport):
            s = key_of.get((r["prompt_id"], r["trial"], bool(r.get("cache_reuse"))))
            if s is not None:
                series[s][1].append(r)
        return series

    def units_for(self, artifact: Artifact, transport: str, todo: list[Cell]) -> list[list[Cell]]:
        """This round's trials of every cell not stopped yet, each a unit of requests run back to back."""
        units = []
        for planned, rows in self.by_series(artifact, transport, todo).values():
            for trial in schedule.next_trials(self.rule, planned, rows, {r["trial"] for r in rows}):
                units.append(sorted((c for c in planned if c.trial == trial), key=lambda c: c.order))
        return units

    def stop_record(self, artifact: Artifact, transport: str, todo: list[Cell]) -> list[dict]:
        """Per cell: n (trials with an ok request outside flagged windows) and why it stopped."""
        out = []
        for (workload, group, reuse), (planned, rows) in self.by_series(artifact, transport, todo).items():
            valid = [r for r in rows if r.get("status") == "ok" and not r.get("drift_flag")]
            out.append({"runtime": self.runtime.name, "transport": transport, "format": artifact.format,
                        "quant": artifact.quant, "workload": workload, "target_tokens": group, "cache_reuse": reuse,
                        "trials": len({r["trial"] for r in valid}), "requests": len(valid),
                        "stop": schedule.stop_reason(self.rule, planned[0].fixed, len({c.trial for c in planned}),
                                                     rows) or "interrupted"})
        return out

    def skip_long(self, artifact: Artifact, transport: str, todo: list[Cell]) -> list[Cell]:
        """Cells whose prompt exceeds workload.max_prompt_tokens (a runtime's per-request time budget here)
        become `skipped` rows with the reason (one per prompt); the rest is returned."""
        limit = self.max_prompt_tokens
        if not limit:
            return todo
        over = [c for c in todo if len(c.request.prompt_ids) > int(limit)]
        if over:
            self.fail_all(artifact, transport, [c for c in over if c.trial == 0], "skipped",
                          f"prompt longer than engine.{self.runtime.name}.workload.max_prompt_tokens={limit} "
                          f"(this runtime's per-request time budget on this machine); not run")
        return [c for c in todo if len(c.request.prompt_ids) <= int(limit)]

    def run_session(self, artifact: Artifact, transport: str, units: list[list[Cell]], plan: list[Cell],
                    round_: int) -> None:
        """Load (cold start timed), one window of this round's units (re-run once if the machine drifted), then
        the load sweep where one is pending; a load failure fails this round's requests."""
        log.info("%s/%s: loading %s %s (round %d)", self.runtime.name, transport, artifact.format, artifact.quant,
                 round_ + 1)
        flat = [c for unit in units for c in unit]
        bad = integrity.problem(artifact)         # missing or corrupt: caught before the runtime loads it
        if bad:
            self.fail_all(artifact, transport, flat, "error", bad)
            return
        rss_baseline = baseline_rss()
        t0 = time.perf_counter_ns()
        try:
            session = self.runtime.load(artifact, transport)
        except Exception as exc:  # noqa: BLE001
            self.fail_all(artifact, transport, flat, classify(exc), one_line(exc))
            return
        cold_start_s = (time.perf_counter_ns() - t0) * 1e-9
        ctx = {"session": session, "artifact": artifact, "transport": transport, "cold_start_s": cold_start_s,
               "rss_baseline": rss_baseline, "round": round_, "plan": plan}
        try:
            warmed = self.warm_up(ctx, units)
            if units:
                window = self.run_window(ctx, units, warmed)
                if window["flagged"] and usable(ctx):
                    log.warning("%s: the machine's speed moved %.0f%% in this window: re-running it once",
                                window["window"], 100 * window["drift"])
                    self.run_window(ctx, units, warmed, rerun_of=window["window"])
            if self.wants_load(session, artifact, transport) and usable(ctx):
                self.run_load(session, artifact, transport, plan, cold_start_s)
        finally:
            if session.hung and not session.pid:
                # closing an in-process model under a thread still inside it could crash the process
                log.warning("%s/%s %s: left loaded, a request is still running in it", self.runtime.name,
                            transport, artifact.quant)
            else:
                stop_caller(session)
                session.close()

    def probe_speed(self) -> tuple[float, float]:
        """(memory GB/s, matmul GFLOP/s) of the processor the runtime computes on (the GPU for weights on CUDA):
        its speed now."""
        return hardware.speed_probe(self.memory, **self.drift_probe)

    def warm_up(self, ctx: dict, units: list[list[Cell]]) -> str | None:
        """The session's warm-up requests after its load; the first is this round's `cold` row (its cold start
        and first-request TTFT). Returns the warm-up prompt's id."""
        artifact, transport, round_ = ctx["artifact"], ctx["transport"], ctx["round"]
        first = units[0][0] if units else None
        warm = self.warmup_request or (first.request if first else None)
        if warm is None:
            return None
        if self.warmup_max_tokens:      # a slow backend: the cold row needs the first token, not a full answer
            warm = replace(warm, max_tokens=min(warm.max_tokens, self.warmup_max_tokens))
        done = self.store.done()
        for i in range(self.warmup):
            if ctx["session"].hung:
                break
            fields = run_request(ctx["session"], warm, self.timeout_s, ctx["rss_baseline"], self.meter)
            cold = Cell("warmup" if self.warmup_request else first.workload, warm.prompt_id, warm, trial=round_)
            row = {**self.base_row(artifact, transport, cold, "cold"), **fields, "cold_start_s": ctx["cold_start_s"]}
            if i == 0 and ResultStore.cell_key(row) not in done:     # one cold row per (session, round)
                self.store.append(row)
        return warm.prompt_id

    def run_window(self, ctx: dict, units: list[list[Cell]], warmed: str | None, rerun_of: str | None = None) -> dict:
        """One measurement window: the units in a seeded random order across lengths, one unrecorded warm-up
        before the first request of each length (where the prompt set has one), then the runtime's in-window
        references (first round only); the machine's speed is probed before and after. A window whose matmul
        probe moved beyond workload.drift_tolerance around its requests (llama-bench after them has its own pair
        of readings) is `flagged` (its rows leave verdicts out)."""
        artifact, transport, round_ = ctx["artifact"], ctx["transport"], ctx["round"]
        name = f"{artifact.format}/{artifact.quant}/{transport}/r{round_ + 1}" + ("/rerun" if rerun_of else "")
        window = f"{self.run_id}/{name}"
        order = list(units)
        random.Random(f"{self.seed}/{name}").shuffle(order)
        idle_w = energy.idle_power_w(self.meter, self.idle_power_s) if self.meter else None
        probes = [self.probe_speed()]
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        tagged = {"window": window, "probe_gbps": probes[0][0], "cold_start_s": ctx["cold_start_s"],
                  "rerun": bool(rerun_of), "idle_power_w": idle_w,
                  "energy_meter": self.meter.name if self.meter else None}
        warmed_lengths = set()
        spent = {s: schedule.spent_s(rows) for s, (_, rows) in self.by_series(artifact, transport, ctx["plan"]).items()}
        for unit in order:
            if ctx.get("broken"):
                break                       # the rest of the window runs next round, on a fresh load
            if spent.get(unit[0].series, 0.0) >= self.rule.cell_time_cap_s:
                continue                    # the cell's time cap is spent: its remaining trials are not run
            group = unit[0].group
            shape = self.window_warmups.get(group)
            if group not in warmed_lengths and shape and shape.prompt_id != warmed and not ctx["session"].hung:
                # the first request at a new length pays one-time costs (compute-buffer pages, graph shapes: +20-25 %
                # at 128 tokens on llama.cpp here) that llama-bench's own warm-up run hides: one unrecorded request
                out = min(unit[0].request.max_tokens, self.warmup_max_tokens or unit[0].request.max_tokens)
                run_request(ctx["session"], replace(shape, max_tokens=out), self.timeout_s)
            warmed_lengths.add(group)
            for cell in unit:
                if ctx["session"].hung:
                    fields = {"status": "error", "error": ctx["session"].hung}
                else:
                    fields = run_request(ctx["session"], cell.request, self.timeout_s, ctx["rss_baseline"],
                                         self.meter)
                self.store.append({**self.base_row(artifact, transport, cell, "warm"), **fields, **tagged})
                spent[cell.series] = spent.get(cell.series, 0.0) + float(fields.get("e2e_s") or 0)
                if not rerun_of and cell.order == 0 and (cell.fixed or cell.trial < self.rule.min_trials):
                    self.progress.advance()
                if fields["status"] in FAILED and usable(ctx) and not self.answers(ctx):
                    ctx["broken"] = fields["error"]
                    log.warning("%s: the session answers no request since %s: the window ends with this trial and "
                                "the session is loaded again for the rest", window, fields["error"])
        probes.append(self.probe_speed())
        references = [] if not usable(ctx) or round_ or rerun_of else self.runtime.window_references(
            artifact, [c.request for unit in units for c in unit])
        if references:
            probes.append(self.probe_speed())
        moved = drift.moved([p[1] for p in probes[:2]])     # the readings around the requests (not llama-bench's)
        record = {"window": window, "runtime": self.runtime.name, "transport": transport, "format": artifact.format,
                  "quant": artifact.quant, "group": f"round {round_ + 1}", "started_at": started,
                  "probes_gbps": [p[0] for p in probes], "probes_gflops": [p[1] for p in probes], "drift": moved,
                  "flagged": bool(moved > self.drift_tolerance), "rerun_of": rerun_of, "references": references,
                  "idle_power_w": idle_w, "probe_device": self.memory}
        self.store.append_window(record)
        return record

    def answers(self, ctx: dict) -> bool:
        """After a failed request: does the session still answer one token on the shortest prompt? A server whose
        generation thread died (mlx_lm.server after an out-of-memory prefill) fails every later request; such a
        session is loaded again instead of failing the rest of its window."""
        shortest = self.warmup_request or min((c.request for c in ctx["plan"]), key=lambda r: len(r.prompt_ids))
        return run_request(ctx["session"], replace(shortest, max_tokens=1), self.timeout_s)["status"] == "ok"

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
                                   "window": window, "probe_gbps": probes[0][0]})
        self.store.append_window({"window": window, "runtime": self.runtime.name, "transport": transport,
                                  "format": artifact.format, "quant": artifact.quant, "group": "load",
                                  "probes_gbps": [p[0] for p in probes], "probes_gflops": [p[1] for p in probes],
                                  "drift": drift.moved([p[1] for p in probes]), "references": []})


def usable(ctx: dict) -> bool:
    """The session of a window can take more requests: none hung in it (`Session.hung`) and it still answered after
    its last failure (ctx["broken"] unset)."""
    return not ctx["session"].hung and not ctx.get("broken")


def load_runtime(name: str, settings: Engine | dict) -> Runtime:
    """Runtime `name` with its settings: engine.<name> validated (localbench.config.params.engine_settings) or a
    dict of some of its keys (the rest take the schema's defaults)."""
    return runtime_class(name)(settings)
