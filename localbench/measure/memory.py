"""Peak RSS of a process tree, sampled in a background thread (psutil), and the in-process baseline.

Servers are measured by their whole process tree. An in-process session is measured as this process's
peak RSS minus its RSS right before the model was loaded (`baseline_rss`), so the harness's own
footprint (Python, pandas, the runtime's imported libraries) is excluded.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading

import psutil


def tree_rss(pid: int, children: bool = True) -> int:
    """Resident bytes of a process and (with children) all its descendants (0 if it is gone)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if children else [proc]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def baseline_rss() -> int:
    """This process's RSS after a garbage collection and (glibc) returning freed heap to the OS: the
    floor an in-process session's memory is measured from."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)
    return tree_rss(os.getpid(), children=False)


class PeakRSS:
    """Samples tree_rss(pid) every `interval_s` while running; `peak` is the largest value seen.

    50 ms: a 10 ms sampler cost ~8 % of llama.cpp's in-process decode on a 2-core machine."""

    def __init__(self, pid: int | None = None, interval_s: float = 0.05):
        self.pid = pid or os.getpid()
        self.children = pid is not None          # a server's tree; in-process: this process alone (cheaper)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid, self.children))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self.peak = tree_rss(self.pid, self.children)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid, self.children))
