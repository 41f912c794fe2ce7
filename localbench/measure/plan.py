"""The measurement plan: every request a runtime may run, grouped into trials of statistical cells.

A cell (`Cell.series`: workload, target length, cache reuse) is what a table row summarizes; its trials are units
of requests that run back to back (one request; a prefix set in order; a chat session turn by turn). Trial t of a
cell uses the cell's t-th distinct prompt (or chat session), so n counts prompts, not replays, as far as the
prompt set has distinct ones (workload.per_length). Cells of the main plan are adaptive: the harness runs their
trials until the stopping rule holds (localbench.measure.schedule); a slice with `trials` and cache-reuse cells
run exactly their planned trials.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pandas as pd

from localbench.core.types import Request


@dataclass(frozen=True)
class Cell:
    """One planned request: a prompt and a trial number; `group` (the target prompt length) is its length.
    `quants` / `transports`: only these sessions run it (empty: all); `sweep`: its prompt may feed load sweeps;
    `fixed`: the trial count is planned (no stopping rule); `order`: its place within its trial's unit."""
    workload: str
    prompt_id: str
    request: Request
    trial: int
    group: int = 0
    quants: tuple[str, ...] = ()
    transports: tuple[str, ...] = ()
    sweep: bool = True
    fixed: bool = False
    order: int = 0

    def runs_on(self, quant: str, transport: str) -> bool:
        return (not self.quants or quant in self.quants) and (not self.transports or transport in self.transports)

    @property
    def series(self) -> tuple:
        """The statistical cell this request is a trial of."""
        return self.workload, self.group, self.request.reuse_cache


def request_of(p, wl: dict) -> Request:
    """The Request of one prompts.parquet row."""
    return Request(prompt_id=p.prompt_id, prompt_ids=tuple(int(i) for i in p.ids), prompt_text=p.text,
                   max_tokens=int(wl["max_tokens"]), chat=bool(p.chat), messages=tuple(json.loads(p.messages) or ()),
                   reuse_cache=p.workload in wl["cache_reuse"])


def units_of(prompts: pd.DataFrame, workload: str) -> list[list]:
    """A workload's prompts at one length as trial units: one prompt each, a chat session's turns, or a prefix
    set's siblings (one set: the first primes the cache)."""
    rows = list(prompts.itertuples())
    if workload == "chat":
        sessions: dict[int, list] = {}
        for p in sorted(rows, key=lambda p: (p.session, p.turn)):
            sessions.setdefault(int(p.session), []).append(p)
        return list(sessions.values())
    if workload == "prefix":
        return [rows]
    return [[p] for p in rows]


def cells(prompts: pd.DataFrame, wl: dict, trials: int | None = None, baseline: bool = False,
          quants: tuple = (), transports: tuple = (), sweep: bool = True) -> list[Cell]:
    """Every (prompt, trial) of these prompts: `trials` fixed trials, else workload.max_trials candidates of
    adaptive cells (cache-reuse cells: min_trials, fixed). Trial t takes the t-th unit (round robin). With
    `baseline`, a cache-reuse unit runs again with reuse off after itself (its matched no-reuse cell; reuse first:
    run after the baseline, a chat's first turn would hit the last turn's history)."""
    out = []
    for (workload, length), group in prompts.groupby(["workload", "target_tokens"], sort=True):
        reuse = workload in wl["cache_reuse"]
        fixed = trials is not None or reuse
        count = int(trials or (wl["min_trials"] if reuse else wl["max_trials"]))
        units = units_of(group, workload)
        for trial in range(count):
            unit = units[trial % len(units)]
            reqs = [request_of(p, wl) for p in unit]
            if baseline and reuse:
                reqs += [replace(r, reuse_cache=False) for r in reqs]
            out += [Cell(workload, r.prompt_id, r, trial, int(length), quants, transports, sweep, fixed, i)
                    for i, r in enumerate(reqs)]
    return out


def plan_of(prompts: pd.DataFrame, wl: dict, name: str) -> list[Cell]:
    """The main plan (workload.types x lengths) plus every workload.slices entry for this runtime; a cell
    that two parts both ask for runs once."""
    pick = lambda types, lengths: prompts[prompts["target_tokens"].isin(lengths) & prompts["workload"].isin(types)]  # noqa: E731
    plan = cells(pick(wl["types"], wl["lengths"]), wl, baseline=bool(wl.get("reuse_baseline")))
    for part in wl.get("slices") or []:
        if part.get("runtimes") and name not in part["runtimes"]:
            continue
        plan += cells(pick(part["types"], part["lengths"]), wl, part.get("trials"), bool(part.get("reuse_baseline")),
                      tuple(part.get("quants") or ()), tuple(part.get("transports") or ()), sweep=False)
    seen, out = set(), []
    for c in plan:
        if (c.prompt_id, c.trial, c.request.reuse_cache) not in seen:
            seen.add((c.prompt_id, c.trial, c.request.reuse_cache))
            out.append(c)
    return out
