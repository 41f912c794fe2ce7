"""No server outlives the stage that started it: normal exit, exception, Ctrl-C and SIGTERM (DVC's)."""
import contextlib
import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
from stage_project import ROOT, make_project, start_measure

from localbench.transport import servers


def is_reference_server(p: psutil.Process) -> bool:
    """False also for a child gone meanwhile (the stage runs `uname -p` and `ldconfig -p` before its server)."""
    try:
        return "localbench.transport.reference_server" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def server_children(proc: subprocess.Popen, timeout_s: float = 60) -> list[psutil.Process]:
    """The reference server(s) the stage started, once one is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = [p for p in psutil.Process(proc.pid).children(recursive=True) if is_reference_server(p)]
        if kids:
            return kids
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the measure stage started no reference server")


def gone(procs: list[psutil.Process], timeout_s: float = 10) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def rows_written(project) -> list[dict]:
    """The measured rows in data/partial/reference.jsonl (complete lines only: the stage may be writing one)."""
    path = project / "data/partial/reference.jsonl"
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()[1:] if text.endswith("\n") else text.splitlines()[1:-1]
    return [r for r in map(json.loads, lines) if r.get("record") != "window"]


@contextlib.contextmanager
def sigint_not_ignored():
    """Children started inside get SIGINT at its default, as from a terminal or DVC: a background job of a
    non-interactive shell (`pytest ... &` in a script) ignores SIGINT, and that SIG_IGN is inherited, so the stage
    would rightly ignore the test's SIGINT too. A Python handler here is reset to the default by exec."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_measure_leaves_no_server(tmp_path, sig):
    """Ctrl-C or DVC's SIGTERM once rows are being written: the stage exits within 5 s (its watchdog ends it
    servers.EXIT_DEADLINE_S after the signal; benchmarks/signal_bench.py measures ~0.2-0.5 s), stops its server
    and keeps the rows it wrote."""
    with sigint_not_ignored():
        proc = start_measure(make_project(tmp_path, trials=50, itl_ms=50))
    kids = server_children(proc)
    deadline = time.monotonic() + 60
    while not rows_written(tmp_path):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.2)                                  # mid-request
    before = rows_written(tmp_path)
    proc.send_signal(sig)
    sent = time.monotonic()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    latency = time.monotonic() - sent
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate()
    survivors = [p for p in kids if not gone([p])]
    for p in survivors:                              # do not leave them behind when the check fails
        p.kill()
    assert latency < 5, (latency, err[-2000:])
    assert proc.returncode != 0
    assert not survivors, [p.pid for p in survivors]
    after = rows_written(tmp_path)
    assert after[:len(before)] == before and len(after) <= len(before) + 2, err[-2000:]    # kept, and it stopped


def run_script(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


START = ("import sys, pathlib; from localbench.transport.servers import Server; "
         "s = Server([sys.executable, '-m', 'localbench.transport.reference_server', '--port', '{{port}}'], "
         "pathlib.Path({log!r})).start(); print(s.pid, flush=True)\n")


@pytest.mark.parametrize("ending", ["", "raise RuntimeError('stage failed')\n"])
def test_server_stopped_at_exit_and_on_exception(ending, tmp_path):
    """A server nobody closed is stopped by the atexit registry, also when the script dies of an exception."""
    done = run_script(START.format(log=str(tmp_path / "server.log")) + ending)
    pid = int(done.stdout.split()[0])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert ("RuntimeError" in done.stderr) == bool(ending)


def test_stop_is_idempotent_and_deregisters(tmp_path):
    server = servers.Server([sys.executable, "-m", "localbench.transport.reference_server", "--port", "{port}"],
                            tmp_path / "log").start()
    assert server in servers.LIVE and server.alive()
    server.stop()
    server.stop()
    assert server not in servers.LIVE and not server.alive()
