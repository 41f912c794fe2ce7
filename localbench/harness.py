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
import queue
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from localbench import drift, integrity, loadgen, metrics
from localbench.progress import Progress, summary
from localbench.memory import PeakRSS, baseline_rss
from localbench.roofline import memory_of
from localbench.runtimes import registry
from localbench.runtimes.base import Artifact, Chunk, Request, Runtime, RuntimeUnavailable, Sent, Session, Usage
from localbench.schema import empty_row

log = logging.getLogger(__name__)
STOP_GRACE_S = 2.0        # how long a stream asked to stop may take before its session counts as hung


@dataclass(frozen=True)
class Cell:
    """One planned request: a prompt and a trial number; `group` (the target prompt length) is its window.
    `quants` / `transports`: only these sessions run it (empty: all); `sweep`: its prompt may feed load sweeps."""
    workload: str
    prompt_id: str
    request: Request
    trial: int
    group: int = 0
    quants: tuple[str, ...] = ()
    transports: tuple[str, ...] = ()
    sweep: bool = True

    def runs_on(self, quant: str, transport: str) -> bool:
        return (not self.quants or quant in self.quants) and (not self.transports or transport in self.transports)


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


class Caller:
    """The one long-lived thread that calls a session's `stream`, every request of the session, as an application
    calls its model from one thread. A fresh thread per request made llama.cpp's OpenMP build start a new thread
    team on each prefill: +15-25 ms on a 32-token F16 prefill here (88 vs 104-112 ms, llama_decode alone)."""

    def __init__(self, name: str):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            job()
            job = None         # holds no session between jobs

    def stop(self) -> None:
        """Ends the thread once its current job returns (a hung job keeps it, daemon, until exit)."""
        self.jobs.put(None)


def caller_of(session: Session) -> Caller:
    """The session's Caller, started on first use; it ends with stop_caller or when the session is collected."""
    if getattr(session, "_caller", None) is None:
        session._caller = Caller(f"caller-{type(session).__name__}")
        weakref.finalize(session, session._caller.stop)
    return session._caller


def stop_caller(session: Session) -> None:
    caller = getattr(session, "_caller", None)
    if caller is not None:
        caller.stop()
        session._caller = None


def stream_worker(session: Session, request: Request, stop: threading.Event) -> tuple[queue.SimpleQueue, threading.Event]:
    """`session.stream(request)` iterated on the session's Caller thread: each item is stamped (perf_counter_ns)
    the moment the runtime yields it and queued as ("item", ns, item); the stream's start, end or exception
    follow it. The returned event is set once the stream has returned.

    The caller can then wait for the next item with a timeout even when the runtime hangs inside a call."""
    out: queue.SimpleQueue = queue.SimpleQueue()
    finished = threading.Event()

    def pump() -> None:
        try:
            out.put(("start", time.perf_counter_ns(), None))     # in-process: the generate call starts now
            items = session.stream(request)
            for item in items:
                out.put(("item", time.perf_counter_ns(), item))
                if stop.is_set():
                    getattr(items, "close", lambda: None)()
                    break
            out.put(("end", time.perf_counter_ns(), None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises
            out.put(("error", time.perf_counter_ns(), exc))
        finally:
            finished.set()

    caller_of(session).jobs.put(pump)
    return out, finished


def run_request(session: Session, request: Request, timeout_s: float, rss_baseline: int = 0) -> dict:
    """Send one request, timestamp each chunk on arrival, and compute the row's metric fields.

    The stream runs on the session's own thread (stream_worker), so a runtime that hangs inside a request still ends
    as a `timeout` row after `timeout_s`; if its stream then does not stop within a grace period the session
    is marked unusable (`session.hung`: the reason) and the caller moves on.
    `rss_baseline`: this process's RSS right before an in-process session was loaded (subtracted)."""
    arrivals: list[int] = []
    tokens: list[int] = []
    usage: Usage | None = None
    fields: dict = {"status": "ok", "error": None}
    notes: list[str] = []
    stop = threading.Event()
    with PeakRSS(session.pid) as rss:
        sent = time.perf_counter_ns()
        items, finished = stream_worker(session, request, stop)
        try:
            try:
                while True:
                    wait_s = timeout_s - (time.perf_counter_ns() - sent) * 1e-9
                    try:
                        kind, now, item = items.get(timeout=max(wait_s, 0.0))
                    except queue.Empty:
                        raise TimeoutError(f"request exceeded workload.timeout_s={timeout_s:g} "
                                           f"(no answer for {timeout_s:g} s)") from None
                    if kind == "error":
                        raise item
                    if kind == "end":
                        break
                    if kind == "start":
                        sent = now         # in-process boundary: right before the generate call
                    elif isinstance(item, Sent):
                        sent = item.ns     # servers: the request body was on the wire then
                    elif isinstance(item, Usage):
                        usage = item
                    elif isinstance(item, Chunk) and item.tokens > 0:
                        arrivals.append(item.ns or now)     # its socket read where the client stamps one
                        tokens.append(item.tokens)
                    if (now - sent) * 1e-9 > timeout_s:
                        raise TimeoutError(f"request exceeded workload.timeout_s={timeout_s:g}")
                if usage is None:
                    raise RuntimeError("the runtime reported no token usage")
            finally:
                stop.set()
                finished.wait(timeout=min(max(timeout_s, 0.5), STOP_GRACE_S))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            fields.update(status=classify(exc), error=one_line(exc))
            if not finished.is_set():
                session.hung = (f"not run: an earlier request on this session hung past workload.timeout_s="
                                f"{timeout_s:g} and did not stop; the session was abandoned")
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
    """Append-only JSONL of finished rows, valid only for one configuration key.

    On resume a torn last line (the process was killed while writing it) is cut off with a warning, and the
    rows of a load sweep that did not finish (no `load` window record after them) are dropped: the sweep
    runs again whole."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self.rows: list[dict] = []
        self.windows: list[dict] = []       # measurement windows: probe readings and in-window references
        records = self._read() if self.path.exists() else []
        if records and records[0].get("key") == key:
            for record in records[1:]:
                (self.windows if record.get("record") == "window" else self.rows).append(record)
            finished = {w["window"] for w in self.windows}
            unfinished = [r for r in self.rows if r.get("phase") == "load" and r.get("window") not in finished]
            if unfinished:
                log.warning("dropping %d rows of a load sweep that did not finish (it runs again)", len(unfinished))
                self.rows = [r for r in self.rows if not (r.get("phase") == "load" and r.get("window") not in finished)]
            log.info("resuming: %d rows already measured in %s", len(self.rows), self.path)
        if not self.rows and not self.windows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"key": key}) + "\n")

    def _read(self) -> list[dict]:
        """The file's records; a torn last line is cut from the file, any other bad line skipped (warned)."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            log.warning("%s: the last line is incomplete (killed while writing?): %d bytes dropped",
                        self.path, len(data) - cut)
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            data = data[:cut]
        text = data.decode(errors="replace")
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s:%d is not valid JSON: skipped", self.path, number)
                if number == 1:
                    return []
        return records

    def done(self) -> set[tuple]:
        return {self.cell_key(r) for r in self.rows}

    @staticmethod
    def cell_key(row: dict) -> tuple:
        return (row["format"], row["quant"], row["transport"], row["prompt_id"], row["trial"], row["phase"],
                bool(row.get("cache_reuse")))

    def append(self, row: dict) -> None:
        self._write(row)
        self.rows.append(row)

    def append_window(self, window: dict) -> None:
        self._write({"record": "window", **window})
        self.windows.append(window)

    def swept(self, fmt: str, quant: str, transport: str) -> bool:
        """Whether a load sweep of this artifact and transport finished (its `load` window is recorded)."""
        return any(w.get("group") == "load" and (w.get("format"), w.get("quant"), w.get("transport")) ==
                   (fmt, quant, transport) for w in self.windows)

    def _write(self, record: dict) -> None:
        """Append one line; a full disk (or any write error) stops the stage with one line, rows kept."""
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
                f.flush()
        except OSError as exc:
            raise SystemExit(f"cannot append to {self.path}: {exc.strerror or exc}; the {len(self.rows)} rows "
                             f"before it are kept: free space and rerun to resume") from None

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
        drift.buffer(self.drift_probe["size_mib"])    # before any memory baseline: the probe is the harness's
        self.run_id = uuid.uuid4().hex[:12]
        self.probe = runtime.probe()
        self.progress = Progress(runtime.name, 0, show=False)      # run() shows one over its plan

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
                self.progress.advance()

    def run(self, artifacts: list[Artifact], cells: list[Cell]) -> None:
        transports = [t for t in self.runtime.settings.get("transports", self.runtime.transports)]
        only = self.runtime.settings.get("transport_quants") or {}     # engine.<runtime>.transport_quants
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
                if getattr(session, "hung", None):
                    self.fail_all(artifact, transport, cells, "error", session.hung)
                    continue
                self.run_window(ctx, group, list(cells), warmups, done)
                warmups = 0
            if self.wants_load(session, artifact, transport) and not getattr(session, "hung", None):
                self.run_load(session, artifact, transport, plan, cold_start_s)
        finally:
            if getattr(session, "hung", None) and not session.pid:
                # closing an in-process model under a thread still inside it could crash the process
                log.warning("%s/%s %s: left loaded, a request is still running in it", self.runtime.name,
                            transport, artifact.quant)
            else:
                stop_caller(session)
                session.close()

    def probe_speed(self) -> float:
        return drift.probe(**self.drift_probe)

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
            if getattr(ctx["session"], "hung", None):
                break
            fields = run_request(ctx["session"], warm, self.timeout_s, ctx["rss_baseline"])
            cold = Cell("warmup" if self.warmup_request else cells[0].workload, warm.prompt_id, warm, trial=-1)
            if i == 0 and not any(k[:3] == (artifact.format, artifact.quant, transport) and k[5] == "cold"
                                  for k in done):       # one cold row per (artifact, transport), also on resume
                self.store.append({**self.base_row(artifact, transport, cold, "cold"), **fields, **tagged})
        shape = self.window_warmups.get(group)
        if shape and not (warmups and shape.prompt_id == warm.prompt_id) and not getattr(ctx["session"], "hung", None):
            # the first request at a new length pays one-time costs (compute-buffer pages, graph shapes: +20-25 %
            # at 128 tokens on llama.cpp here) that llama-bench's own warm-up run hides: one unrecorded request
            run_request(ctx["session"], replace(shape, max_tokens=cells[0].request.max_tokens), self.timeout_s)
        for cell in cells:
            if getattr(ctx["session"], "hung", None):
                fields = {"status": "error", "error": ctx["session"].hung}
            else:
                fields = run_request(ctx["session"], cell.request, self.timeout_s, ctx["rss_baseline"])
            self.store.append({**self.base_row(artifact, transport, cell, "warm"), **fields, **tagged})
            self.progress.advance()
        probes.append(self.probe_speed())
        references: list[dict] = []
        if hasattr(self.runtime, "window_references") and not getattr(ctx["session"], "hung", None):
            references = self.runtime.window_references(artifact, [c.request for c in cells])
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
        return getattr(session, "target", None) is not None and self.load_pending(artifact, transport)

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
