"""Running one request and timing it: the session's caller thread, the stream pump, the row's metric fields.

Boundaries (DESIGN.md, fidelity): TTFT starts when the request body is on the wire for servers (the client's
`Sent` stamp) and right before the generate call in-process. Every request of a session runs on one long-lived
thread (`Caller`); a runtime that hangs inside a request ends as a `timeout` row and its session is marked hung.
Memory is the runtime's: a server's process tree, or in-process this process's peak minus its RSS right before
the load.
"""
from __future__ import annotations

import json
import queue
import threading
import time
import weakref

from localbench.core import metrics
from localbench.core.types import Chunk, Request, RuntimeUnavailable, Sent, Usage
from localbench.measure.energy import Meter
from localbench.measure.memory import PeakRSS
from localbench.runtimes.base import Session

STOP_GRACE_S = 2.0        # how long a stream asked to stop may take before its session counts as hung


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


def run_request(session: Session, request: Request, timeout_s: float, rss_baseline: int = 0,
                meter: Meter | None = None) -> dict:
    """Send one request, timestamp each chunk on arrival, and compute the row's metric fields.

    The stream runs on the session's own thread (stream_worker), so a runtime that hangs inside a request still ends
    as a `timeout` row after `timeout_s`; if its stream then does not stop within a grace period the session
    is marked unusable (`session.hung`: the reason) and the caller moves on.
    `rss_baseline`: this process's RSS right before an in-process session was loaded (subtracted).
    `meter`: an energy counter, read here (not on the stream's thread) when the send is stamped, at the first token
    and at every later token (the last reading stays)."""
    arrivals: list[int] = []
    tokens: list[int] = []
    energy: list[float] = []          # counter at send, first token, last token
    usage: Usage | None = None
    fields: dict = {"status": "ok", "error": None}
    notes: list[str] = []
    stop = threading.Event()
    interrupted = False
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
                    if kind == "start" or isinstance(item, Sent):
                        # in-process: right before the generate call; servers: the request body was on the wire
                        sent = now if kind == "start" else item.ns
                        if meter:
                            energy[:] = [meter.read()]
                    elif isinstance(item, Usage):
                        usage = item
                    elif isinstance(item, Chunk) and item.tokens > 0:
                        arrivals.append(item.ns or now)     # its socket read where the client stamps one
                        tokens.append(item.tokens)
                        if meter:     # [send, first] after the first token, then [send, first, latest]
                            energy[1 if len(arrivals) == 1 else 2:] = [meter.read()]
                    if (now - sent) * 1e-9 > timeout_s:
                        raise TimeoutError(f"request exceeded workload.timeout_s={timeout_s:g}")
                if usage is None:
                    raise RuntimeError("the runtime reported no token usage")
            except BaseException as exc:
                interrupted = not isinstance(exc, Exception)      # Ctrl-C, a stop signal's SystemExit
                raise
            finally:
                stop.set()
                if not (interrupted and (session.pid or session.external)):
                    # an interrupted server session is not waited for (its stream ends with its connection or its
                    # server, both closed next); in-process, the model must not be closed under a running request
                    finished.wait(timeout=min(max(timeout_s, 0.5), STOP_GRACE_S))
                    if interrupted and not finished.is_set():
                        session.hung = "interrupted while a request was still running in it"
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
        if len(energy) == 2:          # one chunk: the first token is the last
            energy.append(energy[1])
        timeline = metrics.Timeline(sent, arrivals, tokens, usage.prompt_tokens, usage.output_tokens,
                                    energy if len(energy) == 3 else ())
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
