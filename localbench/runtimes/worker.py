"""An in-process session hosted by a worker process of its own, for libraries that cannot share the harness's process.

llama.cpp's CUDA build crashes beside pyarrow's or torch's libraries in one process (README, "The in-process
check"); its runtime loads in-process sessions here instead (engine.llamacpp.inprocess_worker). The worker imports
the runtime's module and what its load needs, nothing of the harness's (no pyarrow, pandas or torch), loads the
session with the runtime's `load_here` and streams it. It stamps the generate call (`Sent`) and every chunk
(`Chunk.ns`) itself with perf_counter_ns, which is CLOCK_MONOTONIC, one clock for both processes: the timing
boundary stays the in-process one, not the pipe's. Memory is the worker's peak minus its RSS right before the load.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any, Iterator

from localbench.core.types import Artifact, Chunk, Request, RuntimeUnavailable, Sent, Usage
from localbench.runtimes.base import Session
from localbench.transport.servers import log_tail


class WorkerSession(Session):
    """The parent's end: starts the worker (`runtime`, "module:Class", made with `settings`; `preload` imported
    before the RSS floor is read, so their libraries count in it as in-process), then `load(artifact)`."""

    def __init__(self, runtime: str, settings: dict, log_path: Path, preload: tuple[str, ...] = ()):
        import psutil

        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.conn, child = Pipe()
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from localbench.runtimes.worker import serve; "
                 "serve(int(sys.argv[1]))", str(child.fileno())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        child.close()
        self.pid = self.proc.pid
        self.buffers: dict[str, int] = {}
        self.call("start", (runtime, settings, preload))
        self.rss_floor = psutil.Process(self.pid).memory_info().rss

    def load(self, artifact: Artifact) -> "WorkerSession":
        """The runtime's in-process session of `artifact`, loaded in the worker (closed again if that fails)."""
        try:
            self.buffers = self.call("load", artifact)
        except BaseException:
            self.close()
            raise
        return self

    def died(self, doing: str) -> RuntimeError:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return RuntimeError(f"the worker process died {doing} ({how}); log {self.log_path}:\n{log_tail(self.log_path)}")

    def call(self, op: str, arg: Any = None) -> Any:
        """One request to the worker and its answer (an error there is raised here)."""
        try:
            self.conn.send((op, arg))
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            raise self.died(f"during {op!r}") from None
        if kind == "error":
            raise rebuilt(value)
        return value

    def stream(self, request: Request) -> Iterator[Chunk | Usage | Sent]:
        try:
            self.conn.send(("stream", request))
        except OSError:
            raise self.died("before a request") from None
        ended = False
        try:
            while True:
                try:
                    kind, value = self.conn.recv()
                except (EOFError, OSError):
                    raise self.died("during a request") from None
                if kind in ("end", "error"):
                    ended = True
                    if kind == "error":
                        raise rebuilt(value)
                    return
                yield Sent(value) if kind == "sent" else value
        finally:
            if not ended and self.proc.poll() is None:     # stopped early (the harness closed the stream): drain
                with contextlib.suppress(OSError, EOFError):
                    self.conn.send(("stop", None))
                    while self.conn.poll(30) and self.conn.recv()[0] not in ("end", "error"):
                        pass

    def memory(self) -> dict[str, int]:
        return dict(self.buffers)

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            if self.proc.poll() is None:
                self.conn.send(("close", None))
                self.conn.poll(30)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()


def rebuilt(error: tuple[str, str]) -> Exception:
    """An exception raised in the worker, rebuilt here (RuntimeUnavailable keeps its type: an `unsupported` row)."""
    kind, message = error
    return RuntimeUnavailable(message) if kind == "RuntimeUnavailable" else RuntimeError(f"{kind}: {message}")


def named(where: str) -> Any:
    """The object `where` ("module:name") names."""
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def serve(fd: int) -> None:
    """The worker's end: answers the parent's requests over the connection `fd` until `close` or the parent's end.
    Ctrl-C is left to the parent, which closes (or kills) this process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    runtime = session = None
    while True:
        try:
            op, arg = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if op == "start":
                where, settings, preload = arg
                runtime = named(where)(settings)
                for module in preload:
                    importlib.import_module(module)
                conn.send(("ok", None))
            elif op == "run":            # "module:function", e.g. what the bindings report about themselves
                conn.send(("ok", named(arg)()))
            elif op == "load":
                session = runtime.load_here(arg)
                conn.send(("ok", session.memory()))
            elif op == "modules":
                conn.send(("ok", sorted(m for m in sys.modules if "." not in m)))
            elif op == "stream":
                conn.send(("sent", time.perf_counter_ns()))      # right before the generate call, as in-process
                items = session.stream(arg)
                for item in items:
                    if isinstance(item, Chunk):
                        item = dataclasses.replace(item, ns=time.perf_counter_ns())
                    conn.send(("item", item))
                    if conn.poll() and conn.recv()[0] == "stop":
                        items.close()
                        break
                conn.send(("end", None))
            elif op == "close":
                if session is not None:
                    session.close()
                conn.send(("ok", None))
                return
        except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
            conn.send(("error", (type(exc).__name__, str(exc))))
