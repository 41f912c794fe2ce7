"""End to end: `dvc exp run -S experiment=ci` in a temporary copy of the repository, then a plot-only change."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from localbench.core.schema import REQUEST_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def sh(cmd: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}"}
    result = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh git repository holding the project's tracked and new files, no DVC outputs."""
    dst = tmp_path_factory.mktemp("e2e") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("models/", "data/", "plots/", "report/", "metrics/")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    (dst / "dvc.lock").unlink(missing_ok=True)
    sh("git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm base", dst)
    return dst


@pytest.fixture(scope="module")
def first_run(repo) -> str:
    return sh("dvc exp run -S experiment=ci", repo)


def test_report_and_rows(repo, first_run):
    report = (repo / "report/report.md").read_text()
    for heading in ("Decode throughput on matched cells", "Machine drift", "Claims of the paper", "Environment"):
        assert f"## {heading}" in report, heading
    assert "| single-stream | openai |" in report          # the calibration covers the single-stream path
    assert (repo / "report/report.html").exists()
    rows = pd.read_parquet(repo / "data/requests.parquet")
    assert list(rows.columns) == REQUEST_SCHEMA.names
    torch_ok = rows[(rows["runtime"] == "torch") & (rows["status"] == "ok")]
    assert len(torch_ok) > 0 and (torch_ok["output_tokens"] == torch_ok["max_tokens"]).all()
    assert (torch_ok["ttft_s"] > 0).all() and (torch_ok["decode_tps"] > 0).all()
    unavailable = rows[rows["status"] == "unavailable"]
    assert unavailable["error"].str.len().gt(0).all()
    assert (repo / "plots/figures/fig1_throughput.png").exists()
    assert json.loads((repo / "metrics/summary.json").read_text())["torch"]


def test_experiment_is_listed(repo, first_run):
    names = sh("dvc exp list --name-only", repo).split()
    assert names, "dvc exp list shows no experiment"
    assert "torch.inprocess.fp32.decode_tps_median" in sh("dvc exp show --no-pager --csv", repo)


def test_plot_param_change_reruns_only_plots_and_report(repo, first_run):
    out = sh("dvc exp run -S experiment=ci -S plots.dpi=60", repo)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"plots", "report"}, out[-3000:]
