"""How fast the measure stage stops on Ctrl-C (SIGINT) or DVC's SIGTERM, and what it leaves behind.

Each run builds a scratch project (tests/stage_project.py: the reference runtime only, a programmed schedule of
8 tokens 50 ms apart, 2 prompts x 50 trials), starts the real stage (`python stages/measure.py reference`), waits
until its first row is in data/partial/reference.jsonl, waits a random 0-1 s more (mid-request), sends the signal
and times the stage's exit. It then checks that no server the stage started is left (the process tree recorded
before the signal, and the server's port) and that the rows written before the signal are still there.

    python benchmarks/signal_bench.py                  # 50 runs, SIGINT and SIGTERM alternating
    python benchmarks/signal_bench.py -n 10 --signal TERM

The stage is started with SIGINT at its default, as from a terminal or DVC (a background job of a
non-interactive shell inherits SIGINT ignored, and the stage keeps that).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from stage_project import make_project


def rows_written(project: Path) -> list[dict]:
    """The measured rows in data/partial/reference.jsonl (complete lines only)."""
    path = project / "data/partial/reference.jsonl"
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()[1:] if text.endswith("\n") else text.splitlines()[1:-1]
    return [r for r in map(json.loads, lines) if r.get("record") != "window"]


def servers_of(proc: psutil.Process) -> list[tuple[psutil.Process, int]]:
    """The stage's reference servers and their ports."""
    found = []
    for p in proc.children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "localbench.transport.reference_server" in " ".join(cmd):
            found.append((p, int(cmd[cmd.index("--port") + 1])))
    return found


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def one_run(i: int, sig: signal.Signals, rng: random.Random, scratch: Path, timeout_s: float) -> dict:
    project = make_project(scratch / f"run{i:03d}", trials=50, itl_ms=50)
    t_start = time.monotonic()
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:                     # a handler here is reset to SIGINT's default in the child by exec
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, str(ROOT / "stages/measure.py"), "reference"], cwd=project,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    stage = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while not rows_written(project):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            return {"run": i, "signal": sig.name, "error": "no row before the stage ended: "
                    + proc.communicate()[1][-500:]}
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 1.0))
    servers = servers_of(stage)
    before = rows_written(project)
    proc.send_signal(sig)
    sent = time.monotonic()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    latency = time.monotonic() - sent
    hung = proc.poll() is None
    if hung:
        proc.kill()
    _, err = proc.communicate()
    _, alive = psutil.wait_procs([p for p, _ in servers], timeout=1.0)
    left = [p.pid for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    ports = [port for _, port in servers if port_open(port)]
    for p in alive:                 # never leave one behind, whatever the result
        try:
            p.kill()
        except psutil.Error:
            pass
    after = rows_written(project)
    return {"run": i, "signal": sig.name, "startup_s": sent - t_start, "rows_before": len(before),
            "rows_after": len(after), "kept": after[:len(before)] == before, "latency_s": latency,
            "hung": hung, "rc": proc.returncode, "servers": len(servers), "servers_left": left,
            "ports_open": ports, "watchdog": "servers killed, exiting now" in err,
            "stopped_line": "stopped by SIG" in err}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50, help="runs (default 50)")
    ap.add_argument("--signal", choices=["alternate", "INT", "TERM"], default="alternate")
    ap.add_argument("--bound", type=float, default=5.0, help="exit latency counted as too slow (s)")
    ap.add_argument("--timeout", type=float, default=60.0, help="give up on a run (kill -9) after this (s)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    sigs = {"INT": [signal.SIGINT], "TERM": [signal.SIGTERM], "alternate": [signal.SIGINT, signal.SIGTERM]}[a.signal]
    load0 = os.getloadavg()
    print(f"{a.n} runs on {os.cpu_count()} CPUs, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}",
          flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="signal_bench-") as scratch:
        for i in range(a.n):
            r = one_run(i, sigs[i % len(sigs)], rng, Path(scratch), a.timeout)
            results.append(r)
            if "error" in r:
                print(f"{i:3d} {r['signal']:7s} ERROR {r['error']}", flush=True)
                continue
            print(f"{i:3d} {r['signal']:7s} exit {r['latency_s']:6.3f} s  rc {r['rc']:4d}  rows {r['rows_before']:3d}"
                  f" -> {r['rows_after']:3d} kept={r['kept']!s:5s} servers left {len(r['servers_left'])}"
                  f" ports open {len(r['ports_open'])}{'  WATCHDOG' if r['watchdog'] else ''}"
                  f"{'  HUNG' if r['hung'] else ''}", flush=True)
    ok = [r for r in results if "error" not in r]
    load1 = os.getloadavg()
    print(f"\nload average now {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    for name in sorted({r["signal"] for r in ok}) + ["all"]:
        rs = [r for r in ok if name in ("all", r["signal"])]
        lat = [r["latency_s"] for r in rs]
        print(f"{name:7s} n={len(rs):3d}  exit latency median {statistics.median(lat):.3f} s  p90 {pct(lat, 0.9):.3f} s"
              f"  max {max(lat):.3f} s  over {a.bound:g} s: {sum(x > a.bound for x in lat)}"
              f"  servers left: {sum(bool(r['servers_left'] or r['ports_open']) for r in rs)}"
              f"  rows lost: {sum(not r['kept'] for r in rs)}  watchdog exits: {sum(r['watchdog'] for r in rs)}"
              f"  nonzero rc: {sum(r['rc'] != 0 for r in rs)}")
    if len(ok) < len(results):
        print(f"{len(results) - len(ok)} runs failed before the signal")


if __name__ == "__main__":
    main()
