"""The measurement plan: one Cell per (prompt, trial), built from prompts.parquet and the workload settings."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pandas as pd

from localbench.core.types import Request


@dataclass(frozen=True)
class Cell:
    """One planned request: a prompt and a trial number; `group` (the target prompt length) is its window.
    `quants` / `transports`: only these sessions run it (empty: all); `sweep`: its prompt may feed load sweeps."""
    workload: str
    prompt_id: str
    request: Request
    trial: int
    group: int = 0
    quants: tuple[str, ...] = ()
    transports: tuple[str, ...] = ()
    sweep: bool = True

    def runs_on(self, quant: str, transport: str) -> bool:
        return (not self.quants or quant in self.quants) and (not self.transports or transport in self.transports)


def request_of(p, wl: dict) -> Request:
    """The Request of one prompts.parquet row."""
    return Request(prompt_id=p.prompt_id, prompt_ids=tuple(int(i) for i in p.ids), prompt_text=p.text,
                   max_tokens=int(wl["max_tokens"]), chat=bool(p.chat), messages=tuple(json.loads(p.messages) or ()),
                   reuse_cache=p.workload in wl["cache_reuse"])


def cells(prompts: pd.DataFrame, wl: dict, trials: int | None = None, baseline: bool = False,
          quants: tuple = (), transports: tuple = (), sweep: bool = True) -> list[Cell]:
    """Every (prompt, trial), trials interleaved (trial-major) as the paper's procedure does; the harness
    runs them in one window per target length. The plan runs in order, so a reuse request follows its sibling
    (prefix) or previous turn (chat) and can hit what that one left; with `baseline`, each trial then runs the
    cache-reuse workloads' prompts again with reuse off (their matched no-reuse cells). Reuse first: run after
    the baseline, a chat's first turn would hit the last turn's history and MLX's kept cache would be gone."""
    out = []
    for trial in range(int(trials or wl["trials"])):
        out += [Cell(p.workload, p.prompt_id, request_of(p, wl), trial, int(p.target_tokens), quants, transports,
                     sweep) for p in prompts.itertuples()]
        out += [Cell(p.workload, p.prompt_id, replace(request_of(p, wl), reuse_cache=False), trial,
                     int(p.target_tokens), quants, transports, sweep)
                for p in prompts.itertuples() if baseline and p.workload in wl["cache_reuse"]]
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
