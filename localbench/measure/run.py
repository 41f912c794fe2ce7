"""The measure stage of one runtime: its artifacts and plan, the measurement, the outputs (data/raw/<runtime>/).

Rows accumulate in data/partial/<runtime>.jsonl while the stage runs (not a DVC out, so an interrupted run keeps
them); a rerun with the same configuration resumes, and the finished stage writes Parquet.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from localbench.artifacts import catalog
from localbench.config.params import engine_settings
from localbench.core import environment
from localbench.core.schema import REQUEST_SCHEMA, to_table
from localbench.core.types import Artifact
from localbench.measure.plan import plan_of, request_of
from localbench.measure.session import Measurement, load_runtime
from localbench.measure.store import ResultStore, config_key

log = logging.getLogger("measure")


def measure_runtime(name: str, cfg: dict, out: Path) -> None:
    """data/raw/<name>/ (requests.parquet, extra.json, logs) for one runtime; rows accumulate in
    data/partial/<name>.jsonl while it runs, so an interrupted run resumes."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    extra: dict = {"runtime": name}
    rows: list[dict] = []
    if not cfg["runtime"].get(name):
        extra["skipped"] = f"runtime.{name} is false in this profile (select it with -S runtime=...)"
    else:
        settings = engine_settings(name, cfg).model_copy(update={"log_dir": str(out / "logs")})
        runtime = load_runtime(name, settings)
        # engine.<runtime>.workload / .load: per-runtime narrowing (e.g. fewer lengths for a slow backend)
        wl = settings.workload_over(cfg["workload"])
        load = settings.load_over(cfg["load"])
        ok, failed = catalog.artifacts(runtime.formats, cfg["convert"])
        if settings.quants:     # engine.<runtime>.quants: measure only these of the converted artifacts
            ok = [a for a in ok if a.quant in settings.quants]
        if not runtime.formats:     # a server without artifacts: the endpoint's model and URL (else the model's name)
            ok = [Artifact(model=getattr(settings, "model", cfg["model"]["name"]), format="server", quant="n/a",
                           path=getattr(settings, "base_url", ""))]
        prompts = pd.read_parquet("data/prompts.parquet")
        plan = plan_of(prompts, wl, name)
        warmups = {int(p.target_tokens): request_of(p, wl)
                   for p in prompts[prompts["workload"] == "warmup"].itertuples()}
        if not plan:
            raise SystemExit(f"measure@{name}: no prompts match lengths {wl['lengths']} and types {wl['types']}; "
                             f"engine.{name}.workload must pick among workload.lengths/types")
        key = config_key(settings.model_dump(mode="json"), wl, load, [vars(a) for a in ok], failed,
                         [(c.prompt_id, c.trial, c.request.reuse_cache, c.quants, c.transports) for c in plan])
        partial = Path("data/partial") / f"{name}.jsonl"
        store = ResultStore(partial, key)
        machine = environment.manifest()
        extra["environment"] = machine      # the measuring machine's, for a bundle exported elsewhere (bundles.export)
        run = Measurement(runtime, store, environment.fingerprint(machine), wl, load, warmups)
        for row in failed:
            art = Artifact(row["model"], row["format"], row["quant"], row["path"] or "")
            for transport in settings.transports:
                run.fail_all(art, transport, plan, "unavailable", f"conversion failed: {row['error']}")
        run.run(ok, plan)
        extra["probe"] = vars(run.probe)
        extra["energy"] = run.energy
        extra["records"] = run.load_summaries
        if run.probe.available and ok:
            try:
                extra["records"] += runtime.extra_measurements(ok, [c.request for c in plan], out)
            except Exception as exc:  # noqa: BLE001 - the per-request rows stay valid
                log.error("extra measurements failed: %s", exc)
                extra["records_error"] = f"{type(exc).__name__}: {exc}"
        rows = store.rows_with_drift()
        extra["windows"] = store.windows
        extra["cells"] = run.stops
    write_outputs(out, rows, extra)
    (Path("data/partial") / f"{name}.jsonl").unlink(missing_ok=True)


def write_outputs(out: Path, rows: list[dict], extra: dict) -> None:
    """A measure stage's outputs: requests.parquet (the row schema) and extra.json."""
    pq.write_table(to_table(rows, REQUEST_SCHEMA), out / "requests.parquet")
    (out / "extra.json").write_text(json.dumps(extra, indent=2, default=str))


def salvage(name: str, out: Path) -> bool:
    """data/raw/<name>/ from the rows an unfinished measure stage left in data/partial/<name>.jsonl (a GPU lease
    that ended mid-stage): requests.parquet as the stage would write it and extra.json saying `cut_short`; the
    partial file stays, so the stage can still resume. False where there is nothing to salvage."""
    partial = Path("data/partial") / f"{name}.jsonl"
    if not partial.exists():
        return False
    store = ResultStore.recorded(partial)
    if not store.rows:
        return False
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_outputs(out, store.rows_with_drift(), {
        "runtime": name, "windows": store.windows,
        "cut_short": f"the stage stopped before its plan ended: {len(store.rows)} rows kept from {partial}"})
    return True
