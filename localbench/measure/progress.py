"""What a person watching a measure stage sees: one progress bar (requests done / planned, the artifact and
transport being measured, ETA) on stderr when it is a terminal, and one summary line per artifact session."""
from __future__ import annotations

import logging
import statistics
import sys

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("measure")


class Progress:
    """A bar over the planned single-stream requests of one measure stage (load sweeps shown as its postfix)."""

    def __init__(self, name: str, total: int, show: bool = True):
        self.bar = tqdm(total=total, desc=name, unit="req", file=sys.stderr, mininterval=0.5, dynamic_ncols=True,
                        disable=not (show and sys.stderr.isatty()), leave=True)
        self.logs = None
        if not self.bar.disable:                  # log lines go above the bar instead of through it
            self.logs = logging_redirect_tqdm()
            self.logs.__enter__()

    def at(self, what: str) -> None:
        self.bar.set_postfix_str(what, refresh=True)

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def say(self, line: str) -> None:
        """A line above the bar (a plain log line when there is no bar)."""
        if self.bar.disable:
            log.info(line)
        else:
            tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.logs:
            self.logs.__exit__(None, None, None)
            self.logs = None


def summary(label: str, rows: list[dict], seconds: float) -> str:
    """One line for one artifact session: requests by status, median decode tok/s and TTFT of the ok ones."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    ok = [r for r in rows if r["status"] == "ok"]
    parts = [f"{label}: {len(rows)} requests in {seconds:.0f} s ("
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: kv[0] != "ok")) + ")"]
    decode = [r["decode_tps"] for r in ok if r.get("decode_tps") is not None]
    ttft = [r["ttft_s"] for r in ok if r.get("ttft_s") is not None]
    if decode:
        parts.append(f"decode {statistics.median(decode):.1f} tok/s")
    if ttft:
        parts.append(f"TTFT p50 {statistics.median(ttft) * 1e3:.0f} ms")
    failed = next((r["error"] for r in rows if r["status"] != "ok" and r.get("error")), None)
    if failed:
        parts.append(f"first failure: {failed[:120]}")
    return "; ".join(parts)
