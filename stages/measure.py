"""DVC stage `measure@<runtime>`: data/raw/<runtime>/ with requests.parquet, extra.json and server logs.

Rows accumulate in data/partial/<runtime>.jsonl while the stage runs (not a DVC out, so an interrupted
run keeps them); a rerun with the same configuration resumes, and the finished stage writes Parquet.
"""
import json
import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from localbench import catalog, environment, servers
from localbench.config import params, setup_logging
from localbench.harness import Cell, Measurement, ResultStore, config_key, load_runtime
from localbench.runtimes.base import Artifact, Request
from localbench.schema import REQUEST_SCHEMA, to_table

log = logging.getLogger("measure")


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


def main(name: str) -> None:
    setup_logging()
    servers.stop_on_signals()     # DVC's SIGTERM stops the servers as Ctrl-C does
    cfg = params("model", "runtime", "engine", "workload", "convert", "load")
    out = Path("data/raw") / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    extra: dict = {"runtime": name}
    rows: list[dict] = []
    if not cfg["runtime"].get(name):
        extra["skipped"] = f"runtime.{name} is false in this profile (select it with -S runtime=...)"
    else:
        settings = {**(cfg["engine"].get(name) or {}), "log_dir": str(out / "logs")}
        runtime = load_runtime(name, settings)
        # engine.<runtime>.workload / .load: per-runtime narrowing (e.g. fewer lengths for a slow backend)
        wl = {**cfg["workload"], **(settings.get("workload") or {})}
        load = {**cfg["load"], **(settings.get("load") or {})}
        ok, failed = catalog.artifacts(runtime.formats, cfg["convert"])
        if settings.get("quants"):     # engine.<runtime>.quants: measure only these of the converted artifacts
            ok = [a for a in ok if a.quant in settings["quants"]]
        if not runtime.formats:
            ok = [Artifact(model=settings.get("model", cfg["model"]["name"]), format="server", quant="n/a",
                           path=settings.get("base_url", ""))]
        prompts = pd.read_parquet("data/prompts.parquet")
        plan = plan_of(prompts, wl, name)
        warmups = {int(p.target_tokens): request_of(p, wl)
                   for p in prompts[prompts["workload"] == "warmup"].itertuples()}
        if not plan:
            raise SystemExit(f"measure@{name}: no prompts match lengths {wl['lengths']} and types {wl['types']}; "
                             f"engine.{name}.workload must pick among workload.lengths/types")
        key = config_key(settings, wl, load, [vars(a) for a in ok], failed,
                         [(c.prompt_id, c.request.reuse_cache, c.quants, c.transports) for c in plan])
        partial = Path("data/partial") / f"{name}.jsonl"
        store = ResultStore(partial, key)
        run = Measurement(runtime, store, environment.fingerprint(), wl, load, warmups)
        for row in failed:
            art = Artifact(row["model"], row["format"], row["quant"], row["path"] or "")
            for transport in settings.get("transports", runtime.transports):
                run.fail_all(art, transport, plan, "unavailable", f"conversion failed: {row['error']}")
        run.run(ok, plan)
        extra["probe"] = vars(run.probe)
        extra["records"] = run.load_summaries
        if run.probe.available and hasattr(runtime, "extra_measurements") and ok:
            try:
                extra["records"] += runtime.extra_measurements(ok, [c.request for c in plan], out)
            except Exception as exc:  # noqa: BLE001 - the per-request rows stay valid
                log.error("extra measurements failed: %s", exc)
                extra["records_error"] = f"{type(exc).__name__}: {exc}"
        rows = store.rows_with_drift()
        extra["windows"] = store.windows
    pq.write_table(to_table(rows, REQUEST_SCHEMA), out / "requests.parquet")
    (out / "extra.json").write_text(json.dumps(extra, indent=2, default=str))
    (Path("data/partial") / f"{name}.jsonl").unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1])
