"""Launching a local inference server the way a user would: on 127.0.0.1, on a free port, readiness polled.

Cold start is measured from spawn to the first successful readiness probe; the server's log is kept in a
file beside the results. Every runtime with a server transport (llama-server, mlx_lm.server, mlc_llm
serve, the reference server) uses this one launcher.

No server outlives the pipeline: each runs in its own process group, stopped by `stop()` (sessions' close),
and every live one is also stopped at interpreter exit (`atexit`); `stop_on_signals()` turns SIGTERM/SIGHUP
(DVC stopping a stage) into SystemExit so `finally: session.close()` runs as it does on Ctrl-C.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Sequence

import httpx

HOST = "127.0.0.1"
LIVE: set["Server"] = set()          # servers started and not stopped yet


def stop_all() -> None:
    """Stop every server this process started that is still up (atexit, and after a fatal signal)."""
    for server in list(LIVE):
        server.stop(grace_s=5.0)


atexit.register(stop_all)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


def stop_on_signals(signals=(signal.SIGTERM, signal.SIGHUP)) -> None:
    """Make these signals raise SystemExit in the main thread, so `finally` blocks and atexit run."""
    for sig in signals:
        signal.signal(sig, _exit_on_signal)


class ServerDied(RuntimeError):
    """The server process exited or never became ready; the message carries the end of its log."""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Server:
    """A server process started from `argv` (which must contain '{port}' somewhere, filled in here).

    `ready_path` is polled with GET until it answers 200; `cold_start_s` is spawn -> ready.
    """

    def __init__(self, argv: Sequence[str], log_path: Path, ready_path: str = "/v1/models",
                 env: dict[str, str] | None = None, ready_timeout_s: float = 300.0):
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.base_url = f"http://{HOST}:{self.port}"
        self.log_path = Path(log_path)
        self.ready_path = ready_path
        self.env = {**os.environ, **(env or {})}
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self.cold_start_s: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "Server":
        """Spawn and wait until ready; raises ServerDied with the log's tail if it exits or times out."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n=== {' '.join(self.argv)}\n".encode())
        log.flush()
        t0 = time.perf_counter_ns()
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        LIVE.add(self)
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.stop(grace_s=1.0)        # its process group: a child it forked may still be up
                    raise ServerDied(f"{self.argv[0]} exited with code {self.proc.returncode} before it was "
                                     f"ready; log {self.log_path}:\n{log_tail(self.log_path)}")
                try:
                    if client.get(self.base_url + self.ready_path).status_code == 200:
                        self.cold_start_s = (time.perf_counter_ns() - t0) * 1e-9
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise ServerDied(f"{self.argv[0]} not ready after {self.ready_timeout_s:.0f}s; log {self.log_path}:\n"
                         f"{log_tail(self.log_path)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL after `grace_s` (the group also when the leader is gone:
        a worker it forked may still be up)."""
        LIVE.discard(self)
        if not self.proc:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
