"""Launching a local inference server the way a user would: on 127.0.0.1, on a free port, readiness polled.

Cold start is measured from spawn to the first successful readiness probe; the server's log is kept in a
file beside the results. Every runtime with a server transport (llama-server, mlx_lm.server, mlc_llm
serve, the reference server) uses this one launcher.

No server outlives the pipeline: each runs in its own process group, stopped by `stop()` (sessions' close),
and every live one is also stopped at interpreter exit (`atexit`). `stop_on_signals()` turns SIGTERM (DVC
stopping a stage), SIGHUP and SIGINT (Ctrl-C) into SystemExit / KeyboardInterrupt so `finally: session.close()`
runs, with a bound: once a stop signal came, a server gets SIGNAL_GRACE_S between SIGTERM and SIGKILL, a
watchdog thread kills every server's group and ends the process EXIT_DEADLINE_S after the signal whatever the
main thread is doing, and a second signal does that at once. `exit_after_signal()` ends a stage that has
cleaned up without the interpreter's teardown (seconds with torch imported).
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn, Sequence

import httpx

HOST = "127.0.0.1"
LIVE: set["Server"] = set()          # servers started and not stopped yet
STARTED: set["Server"] = set()       # every server started here (the watchdog kills those not reaped yet)
SIGNAL_GRACE_S = 2.0                 # SIGTERM -> SIGKILL of a server once a stop signal came (else stop's grace_s)
EXIT_DEADLINE_S = 4.0                # after the first stop signal the process ends within this, cleaned up or not

log = logging.getLogger(__name__)
_stopping: list[int] = []            # the first stop signal received, once one came
_watchdog_go = threading.Lock()      # held until a stop signal: releasing it (atomic, no Python lock) arms the watchdog


def stop_all(grace_s: float = 5.0) -> None:
    """Stop every server this process started that is still up (atexit, and after a stop signal): SIGTERM to
    all of their process groups at once, one shared grace, then SIGKILL to any group still up."""
    stopping = [server for server in list(LIVE) if server._signal_group(signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    for server in stopping:
        server._reap(max(deadline - time.monotonic(), 0.0))


atexit.register(stop_all)


def stopping() -> int | None:
    """The stop signal this process received (stop_on_signals), or None."""
    return _stopping[0] if _stopping else None


def _say(line: str) -> None:
    """One line on stderr without Python's buffers or locks (which a stuck main thread may hold)."""
    try:
        os.write(2, (line.rstrip("\n") + "\n").encode(errors="replace"))
    except OSError:
        pass


def _kill_all_and_exit(signum: int, why: str) -> NoReturn:
    """SIGKILL every server group not reaped yet, then end the process now (no finally, no atexit)."""
    for server in list(STARTED):
        if server.proc is not None and server.proc.returncode is None:
            try:
                os.killpg(server.proc.pid, signal.SIGKILL)
            except OSError:
                pass
    _say(f"{why}: its servers killed, exiting now")
    os._exit(128 + signum)


def _watchdog() -> None:
    _watchdog_go.acquire()              # released by the first stop signal
    signum = _stopping[0]
    time.sleep(EXIT_DEADLINE_S)
    _kill_all_and_exit(signum, f"still running {EXIT_DEADLINE_S:g} s after {signal.Signals(signum).name}")


def _on_stop_signal(signum, frame) -> None:
    if _stopping:                       # a second signal: no more waiting
        _kill_all_and_exit(signum, f"second stop signal ({signal.Signals(signum).name})")
    _stopping.append(signum)
    try:
        _watchdog_go.release()
    except RuntimeError:                # no watchdog (stop_on_signals was not called): nothing to arm
        pass
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def stop_on_signals(signals=(signal.SIGTERM, signal.SIGHUP, signal.SIGINT)) -> None:
    """Make these signals raise SystemExit (KeyboardInterrupt for SIGINT) in the main thread, so `finally`
    blocks and atexit run, and start the watchdog that ends the process EXIT_DEADLINE_S after the first one.

    A SIGHUP or SIGINT this process inherited as ignored stays ignored (nohup; a background job of a
    non-interactive shell ignores SIGINT, POSIX): that launcher asked for it. Call from the main thread."""
    if not any(t.name == "stop-signal-watchdog" for t in threading.enumerate()):
        _watchdog_go.acquire(blocking=False)
        threading.Thread(target=_watchdog, name="stop-signal-watchdog", daemon=True).start()
    for sig in signals:
        if sig != signal.SIGTERM and signal.getsignal(sig) == signal.SIG_IGN:
            if sig == signal.SIGINT:
                log.debug("SIGINT (Ctrl-C) is ignored in this process, as its launcher set it (a background job of "
                         "a non-interactive shell); stop it with SIGTERM")
            continue
        signal.signal(sig, _on_stop_signal)


def exit_after_signal(message: str = "") -> NoReturn:
    """End the process after a stop signal, once its `finally` blocks have run: stop any server left (one short
    shared grace), log `message`, flush, and exit without the interpreter's teardown, by SIGINT itself after a
    Ctrl-C (as Python does: the shell sees 130) and with 128 + the signal's number otherwise."""
    signum = _stopping[0] if _stopping else signal.SIGTERM
    stop_all(grace_s=SIGNAL_GRACE_S)
    if message:
        log.warning(message)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if signum == signal.SIGINT and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(128 + signum)


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
        STARTED.add(self)
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
        a worker it forked may still be up); after a stop signal the grace is at most SIGNAL_GRACE_S."""
        if self._signal_group(signal.SIGTERM):
            self._reap(grace_s)

    def _signal_group(self, sig: int) -> bool:
        """Send `sig` to the process group; False (and deregistered) when there is none (never started, gone)."""
        try:
            if self.proc:
                os.killpg(self.proc.pid, sig)
                return True
        except ProcessLookupError:
            pass
        LIVE.discard(self)
        return False

    def _reap(self, grace_s: float) -> None:
        """Wait up to `grace_s` for the leader, then SIGKILL the group, reap it and deregister. A stop signal
        interrupting this leaves the server in LIVE, for the stop_all that follows."""
        if _stopping:
            grace_s = min(grace_s, SIGNAL_GRACE_S)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        LIVE.discard(self)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
