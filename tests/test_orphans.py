"""No server outlives the stage that started it: normal exit, exception, Ctrl-C and SIGTERM (DVC's)."""
import signal
import subprocess
import sys
import time

import psutil
import pytest
from stage_project import ROOT, make_project, start_measure

from localbench.transport import servers


def server_children(proc: subprocess.Popen, timeout_s: float = 60) -> list[psutil.Process]:
    """The reference server(s) the stage started, once one is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = [p for p in psutil.Process(proc.pid).children(recursive=True)
                if "localbench.transport.reference_server" in " ".join(p.cmdline())]
        if kids:
            return kids
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the measure stage started no reference server")


def gone(procs: list[psutil.Process], timeout_s: float = 10) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_measure_leaves_no_server(tmp_path, sig):
    proc = start_measure(make_project(tmp_path, trials=50, itl_ms=50))
    kids = server_children(proc)
    time.sleep(0.5)                                  # requests in flight
    proc.send_signal(sig)
    proc.wait(timeout=30)
    survivors = [p for p in kids if not gone([p])]
    for p in survivors:                              # do not leave them behind when the check fails
        p.kill()
    assert proc.returncode != 0
    assert not survivors, [p.pid for p in survivors]


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
