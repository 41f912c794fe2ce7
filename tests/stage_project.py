"""A throwaway project directory in which a real measure stage runs against the reference server."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_project(path: Path, n_prompts: int = 2, trials: int = 2, itl_ms: float = 5.0, tokens: int = 8,
                 load: bool = False, timeout_s: float = 30) -> Path:
    """params.yaml with only the reference runtime, and data/prompts.parquet with `n_prompts` unique prompts of one
    length (one cell: trial t takes prompt t mod n_prompts); `trials` fixed trials in one round, no drift re-runs."""
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    cfg["runtime"] = {name: name == "reference" for name in cfg["runtime"]}
    cfg["engine"]["reference"].update(itl_ms=itl_ms, ttft_ms=5.0, tokens=tokens, request_timeout_s=timeout_s)
    cfg["workload"].update(types=["unique"], lengths=[8], min_trials=trials, max_trials=trials,
                           rounds=1, drift_tolerance=10.0, warmup=1, max_tokens=tokens,
                           timeout_s=timeout_s, drift_probe_mib=4, drift_probe_repeats=1)
    cfg["load"].update(enabled=load, quants=[], concurrency=[1, 2], closed_requests=4, rates=[], warmup=0,
                       max_tokens=tokens, duration_s=30)
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "params.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"workload": "unique", "prompt_id": f"unique-8-{i}", "target_tokens": 8, "ids": list(range(i, i + 8)),
             "text": " ".join(f"w{j}" for j in range(8)), "chat": False, "messages": json.dumps(None)}
            for i in range(n_prompts)]
    rows.append({"workload": "warmup", "prompt_id": "warmup-8-0", "target_tokens": 8, "ids": list(range(100, 108)),
                 "text": " ".join("w" for _ in range(8)), "chat": False, "messages": json.dumps(None)})
    pd.DataFrame(rows).to_parquet(path / "data/prompts.parquet", index=False)
    return path


def start_measure(path: Path, runtime: str = "reference") -> subprocess.Popen:
    """`python stages/measure.py <runtime>` in `path`, as DVC starts it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "stages/measure.py"), runtime], cwd=path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def partial_rows(path: Path, runtime: str = "reference") -> list[dict]:
    lines = (path / "data/partial" / f"{runtime}.jsonl").read_text().splitlines()[1:]
    return [r for r in map(json.loads, lines) if r.get("record") != "window"]
