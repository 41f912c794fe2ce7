"""End to end: `dvc exp run -S experiment=ci` in a temporary copy of the repository, then a plot-only change, then
a second machine (a clone) that gets the experiment through a git and a DVC remote and reports beside it."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from localbench.core.schema import REQUEST_SCHEMA
from localbench.report import browser

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e
A_EXP = "ci-a"               # the ci experiment (machine A)
# Machine B: a clone on this machine standing in for another one, so it names its host itself (LOCALBENCH_HOST,
# recorded in its manifest as host_set_by_user). Its measurement is the cheapest that shares a cell with the ci
# run: one runtime (torch), unique prompts only, a short harness calibration; every measure stage and calibrate
# (this machine's roofline) get params of their own, so DVC reruns them on B instead of keeping A's outputs.
B_HOST = "clone-b"
# No window is flagged for drift in these runs (tolerance 10 = 1,000 %): they test the pipeline's plumbing, which must
# not hang on how steady this machine happens to be (a torch window moved >10 % twice and left the headline without
# torch); flagging has tests of its own (tests/measure, tests/report).
STEADY = "-S workload.drift_tolerance=10.0"
B_RUN = (f"-S experiment=ci {STEADY} -S runtime=torch -S 'workload.types=[unique]' -S 'calibration.concurrency=[1]' "
         "-S calibration.requests_per_level=8 -S calibration.single_stream_requests=8")


def sh(cmd: str, cwd: Path, **env: str) -> str:
    """Run `cmd` in `cwd` with the venv's tools and the code under test (PYTHONPATH: this checkout, not the
    venv's editable install, which may point at another one); `env` on top."""
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), **env}
    result = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh git repository holding the project's tracked and new files, no DVC outputs, with two remotes
    beside it: `origin`, a bare git repository, and `shared`, a local-directory DVC remote (the default,
    committed in .dvc/config)."""
    base = tmp_path_factory.mktemp("e2e")
    dst = base / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("models/", "data/", "plots/", "report/", "metrics/")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    (dst / "dvc.lock").unlink(missing_ok=True)
    sh(f"git init -q --bare {base / 'origin.git'}", base)
    sh(f"git init -q && git remote add origin {base / 'origin.git'} && dvc remote add -d shared {base / 'dvc-remote'}"
       " && git add -A && git -c user.name=t -c user.email=t@t commit -qm base", dst)
    return dst


@pytest.fixture(scope="module")
def first_run(repo) -> str:
    return sh(f"dvc exp run -n {A_EXP} -S experiment=ci {STEADY}", repo)


def test_report_and_rows(repo, first_run):
    report = (repo / "report/report.md").read_text()
    for heading in ("Decode throughput on matched cells", "Machine drift", "Claims of the paper", "Environment"):
        assert f"## {heading}" in report, heading
    assert "| single-stream | openai |" in report          # the calibration covers the single-stream path
    assert (repo / "report/index.html").exists()
    rows = pd.read_parquet(repo / "data/requests.parquet")
    assert list(rows.columns) == REQUEST_SCHEMA.names
    torch_ok = rows[(rows["runtime"] == "torch") & (rows["status"] == "ok")]
    assert len(torch_ok) > 0 and (torch_ok["output_tokens"] == torch_ok["max_tokens"]).all()
    assert (torch_ok["ttft_s"] > 0).all() and (torch_ok["decode_tps"] > 0).all()
    unavailable = rows[rows["status"] == "unavailable"]
    assert unavailable["error"].str.len().gt(0).all()
    assert (repo / "plots/figures/fig1_throughput.png").exists()
    assert json.loads((repo / "metrics/summary.json").read_text())["torch"]["decode_tps"] > 0


def test_experiment_is_listed(repo, first_run):
    names = sh("dvc exp list --name-only", repo).split()
    assert names, "dvc exp list shows no experiment"
    head = sh("dvc exp show --no-pager --csv", repo).splitlines()[0].split(",")
    metrics = head[head.index("parent") + 1:]
    assert metrics[:2] == ["cell", "llamacpp.decode_tps"], metrics[:8]   # the headline first (dvc.yaml `metrics`)
    assert "torch.decode_tps" in metrics[:12]


def test_plot_param_change_reruns_only_plots_and_report(repo, first_run):
    out = sh(f"dvc exp run -S experiment=ci {STEADY} -S plots.dpi=60", repo)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"plots", "report"}, out[-3000:]


@pytest.mark.skipif(not browser.chromium(), reason="no chromium executable (make install installs Debian's "
                    "chromium where it runs as root with apt-get)")
def test_page_in_a_real_browser(repo, first_run, tmp_path):
    """The ci run's report/index.html in headless Chromium: no console error, nothing requested outside file://,
    every chart drawn, one runtime chosen leaves only its rows and marks, a claim's link reaches a cell."""
    with browser.opened(repo / "report/index.html") as seen:
        page = seen.page
        page.screenshot(path=str(tmp_path / "index.png"))            # kept with the test's temporary files
        assert not seen.errors, seen.errors
        assert not seen.outside(), seen.outside()
        drawn = page.evaluate(browser.MARKS)
        assert drawn and all(c["marks"] > 0 for c in drawn.values()), drawn
        runtimes = set(page.evaluate(browser.VISIBLE_RUNTIMES))
        assert {"llamacpp", "torch"} <= runtimes, runtimes
        browser.choose(page, "runtime", "torch")
        assert set(page.evaluate(browser.VISIBLE_RUNTIMES)) == {"torch"}
        after = page.evaluate(browser.MARKS)
        assert all(c["runtimes"] in ([], ["torch"]) for c in after.values()), after
        assert any(c["runtimes"] == ["torch"] and c["marks"] > 0 for c in after.values())
        browser.choose(page, "runtime", "")
        link = page.locator("#claims a.evidence").first
        target = link.get_attribute("href")
        link.click()
        page.wait_for_function(f"() => location.hash === {target!r}")
        assert page.locator(f"tr{target}").count() == 1
        box = page.locator(f"tr{target}").bounding_box()
        assert box and 0 <= box["y"] < 1000                               # scrolled into view


def markdown_table(text: str, heading: str) -> list[dict]:
    """The rows of the first Markdown table after `heading` in `text`, as dicts of its header's columns."""
    lines = [line for line in text.split(heading, 1)[1].split("\n###", 1)[0].splitlines() if line.startswith("|")]
    header, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [dict(zip(header, row)) for row in rows[1:]]                  # rows[0]: the --- line


def test_second_machine_through_dvc_remotes(repo, first_run, tmp_path):
    """README "Several machines, one report", the DVC-remote path: machine A (this module's ci experiment)
    pushes it to the git and DVC remotes; machine B, a clone, pulls it, exports A's bundle, measures one runtime
    on top of A's models (download, conversion and quality are not rerun) and its report shows both hosts on
    the cell both measured."""
    a_host, = pd.read_parquet(repo / "data/requests.parquet")["host"].unique()
    sh(f"git push -q origin HEAD && dvc exp push origin {A_EXP}", repo)
    b = tmp_path / "b"
    sh(f"git clone -q {repo.parent / 'origin.git'} {b}", tmp_path)
    sh(f"dvc exp pull origin {A_EXP} && dvc exp apply {A_EXP} && python -m localbench.analysis.bundles export",
       b, LOCALBENCH_HOST=B_HOST)
    exported = json.loads((b / "results" / a_host / "manifest.json").read_text())
    assert exported["host"] == a_host and "host_set_by_user" not in exported    # A's manifest, not B's
    out = sh(f"dvc exp run -n ci-b {B_RUN}", b, LOCALBENCH_HOST=B_HOST)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert {"calibrate", "measure@torch", "report"} <= ran, out[-3000:]
    assert not ran & {"download", "convert-hf@fp32", "convert-gguf-f16", "quality"}, ran   # A's, from the remote
    report = (b / "report/report.md").read_text()
    hosts = {row["host"]: row for row in markdown_table(report, "## Several machines")}
    assert hosts[B_HOST]["source"] == "this run" and hosts[a_host]["source"] == f"results/{a_host}"
    matched = [row for row in markdown_table(report, "### Matched single-stream cells")
               if [row[k] for k in ("runtime", "transport", "quant", "prompt_tokens", "max_tokens")]
               == ["torch", "inprocess", "fp32", "64", "8"]]
    assert len(matched) == 1, report.split("### Matched single-stream cells")[1][:3000]
    for host in (a_host, B_HOST):
        assert float(matched[0][f"{host} · decode tok/s p50"].replace(",", "")) > 0, matched[0]
        assert int(matched[0][f"{host} · n"]) >= 2, matched[0]
