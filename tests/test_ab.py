"""`python -m localbench.ab A B`: ratios B/A of median decode and TTFT on matched cells, with intervals and verdicts,
from result bundles (and DVC experiments) built here from constructed rows."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import request_row

from localbench import ab
from localbench.analysis.bundles import Bundle, write_bundle

ROOT = Path(__file__).resolve().parents[1]
CELLS = [{"runtime": runtime, "quant": quant, "prompt_tokens": tokens}
         for runtime in ("llamacpp", "torch") for quant in ("F16", "Q4_K_M") for tokens in (128, 1024)]


def rows(cells=CELLS, decode=1.0, ttft=1.0, n=12, windows=3, seed=0, **extra) -> list[dict]:
    """`n` requests per cell spread over `windows` windows: decode ~ 20 tok/s x `decode` and TTFT ~ 0.5 s x `ttft`,
    each with a 3 % per-request and 2 % per-window lognormal spread."""
    rng = np.random.default_rng(seed)
    out = []
    for cell in cells:
        shift = {w: rng.lognormal(0, 0.02, 2) for w in range(windows)}
        for i in range(n):
            w = i % windows
            out.append(request_row(**{"model": "m", "format": "gguf", **cell, "window": f"{cell['runtime']}-{w}",
                                      "decode_tps": 20 * decode * shift[w][0] * rng.lognormal(0, 0.03),
                                      "ttft_s": 0.5 * ttft * shift[w][1] * rng.lognormal(0, 0.03), **extra}))
    return out


def bundle(root: Path, host: str, requests: list[dict]) -> str:
    """Write a result bundle results/<host>/ of these request rows, as localbench.analysis.bundles does."""
    frame = pd.DataFrame(requests).assign(host=host)
    return str(write_bundle(Bundle(host=host, requests=frame, artifacts=pd.DataFrame({"model": ["m"]}),
                                   bandwidth={"cpu": 50.0}), root))


def run(tmp_path, *argv) -> dict:
    assert ab.main([*argv, "--out", str(tmp_path / "out")]) == 0
    return json.loads((tmp_path / "out" / "ab.json").read_text())


def verdicts(result: dict, metric: str) -> list[str]:
    return [c["verdict"] for c in result["cells"] if c["metric"] == metric]


def test_aa_pair_from_one_distribution_shows_no_detectable_difference(tmp_path):
    a = bundle(tmp_path, "a", rows(seed=1))
    b = bundle(tmp_path, "b", rows(seed=2))
    result = run(tmp_path, a, b)
    assert len(result["cells"]) == 2 * len(CELLS)
    for metric in ("decode_tps", "ttft_s"):
        share = result["summary"][metric]["no_difference_share"]
        assert share >= 0.85 and result["summary"][metric]["decided"] == len(CELLS), result["summary"]
    for c in result["cells"]:
        assert c["n"] == [12, 12] and c["ci"][0] < c["ratio"] < c["ci"][1]


def test_b_30_percent_faster_decode_reads_faster_and_the_json_has_the_issue_shape(tmp_path, capsys):
    a = bundle(tmp_path, "a", rows(seed=1))
    b = bundle(tmp_path, "b", rows(decode=1.3, seed=2))
    result = run(tmp_path, a, b)
    assert set(result) == {"a", "b", "cells", "summary"}
    assert result["a"] == {"label": "a", "source": a, "kind": "bundle", "where": {}}
    for c in result["cells"]:
        assert set(c) == {"cell", "metric", "ratio", "ci", "n", "verdict"}
        assert set(c["cell"]) == set(ab.HOST_CELL) and c["metric"] in ("decode_tps", "ttft_s")
        assert len(c["ci"]) == 2 and len(c["n"]) == 2
        if c["metric"] == "decode_tps":
            assert 1.2 < c["ratio"] < 1.4 and c["ci"][0] > 1 and c["verdict"] == "faster", c
    assert result["summary"]["decode_tps"]["faster"] == len(CELLS)
    assert result["summary"]["decode_tps"]["no_difference_share"] == 0
    shown = capsys.readouterr().out
    assert shown == (tmp_path / "out" / "ab.md").read_text()
    assert "| llamacpp | F16 | 128 | decode_tps | 1.3" in shown and "faster" in shown


@pytest.mark.parametrize(("metric", "factor", "expected"),
                         [("ttft", 0.7, "faster"), ("ttft", 1.4, "slower"), ("decode", 0.7, "slower")])
def test_direction_lower_ttft_is_faster_lower_decode_is_slower(tmp_path, metric, factor, expected):
    a = bundle(tmp_path, "a", rows(seed=1))
    b = bundle(tmp_path, "b", rows(**{metric: factor}, seed=2))
    result = run(tmp_path, a, b)
    changed, same = ("ttft_s", "decode_tps") if metric == "ttft" else ("decode_tps", "ttft_s")
    assert set(verdicts(result, changed)) == {expected}
    assert result["summary"][same]["no_difference_share"] >= 0.75


def test_one_bundle_compared_with_itself_under_two_filters(tmp_path):
    f16 = rows([{**c, "quant": "F16"} for c in CELLS[:2]], seed=1)
    q4 = rows([{**c, "quant": "Q4_K_M"} for c in CELLS[:2]], decode=1.8, ttft=0.6, seed=2)
    h = bundle(tmp_path, "h", f16 + q4)
    result = run(tmp_path, h, h, "--a-where", "quant=F16", "--b-where", "quant=Q4_K_M")
    assert result["a"]["where"] == {"quant": "F16"} and result["b"]["where"] == {"quant": "Q4_K_M"}
    assert len(result["cells"]) == 4 and all("quant" not in c["cell"] for c in result["cells"])
    assert set(verdicts(result, "decode_tps")) == {"faster"} and set(verdicts(result, "ttft_s")) == {"faster"}
    assert all(1.6 < c["ratio"] < 2.0 for c in result["cells"] if c["metric"] == "decode_tps")
    numeric = run(tmp_path, h, h, "--a-where", "prompt_tokens=128", "--b-where", "prompt_tokens=1024",
                  "--a-where", "quant=F16", "--b-where", "quant=F16", "--metric", "decode_tps")
    assert [c["cell"]["runtime"] for c in numeric["cells"]] == ["llamacpp"]      # 128 vs 1024 tokens, F16 only


def test_fewer_than_3_values_a_side_is_insufficient_n_not_no_difference(tmp_path):
    a = bundle(tmp_path, "a", rows(seed=1))
    b = bundle(tmp_path, "b", rows(CELLS[:1], n=2, seed=2) + rows(CELLS[1:], seed=3))
    result = run(tmp_path, a, b, "--metric", "decode_tps")
    first = result["cells"][0]
    assert first["cell"]["prompt_tokens"] == 128 and first["cell"]["quant"] == "F16"
    assert first["verdict"] == "insufficient n" and first["n"] == [12, 2] and first["ci"] == [None, None]
    summary = result["summary"]["decode_tps"]
    assert summary["insufficient n"] == 1 and summary["decided"] == len(CELLS) - 1
    assert summary["faster"] + summary["slower"] + summary["no detectable difference"] == len(CELLS) - 1
    assert "ttft_s" not in result["summary"]


def test_drift_flagged_rows_are_left_out_and_counted(tmp_path):
    a = bundle(tmp_path, "a", rows(seed=1))                     # no drift_flag column: all False
    drifted = rows(decode=3.0, ttft=0.2, seed=4, drift_flag=True, window="drifted")
    b = bundle(tmp_path, "b", rows(seed=2, drift_flag=False) + drifted)
    result = run(tmp_path, a, b)
    assert result["summary"]["drift_excluded"] == {"a": 0, "b": len(drifted)}
    assert all(c["n"] == [12, 12] for c in result["cells"])
    assert result["summary"]["decode_tps"]["faster"] == 0 and result["summary"]["ttft_s"]["faster"] == 0


def test_cells_on_one_side_only_are_counted_not_compared(tmp_path):
    a = bundle(tmp_path, "a", rows(seed=1))
    b = bundle(tmp_path, "b", rows(CELLS[:3], seed=2) + rows([{**CELLS[0], "prompt_tokens": 4096}], seed=3))
    result = run(tmp_path, a, b)
    assert result["summary"]["unmatched"] == {"a_only": len(CELLS) - 3, "b_only": 1}
    assert {c["cell"]["prompt_tokens"] for c in result["cells"]} == {128, 1024}
    assert len(result["cells"]) == 2 * 3
    assert "| 4096 | B |" in (tmp_path / "out" / "ab.md").read_text()


def one_error_line(capsys, argv) -> str:
    assert ab.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and not captured.out and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_cli_errors_are_one_line_naming_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                                # not a DVC repository: a name is no revision
    a = bundle(tmp_path, "a", rows(CELLS[:1], seed=1))
    other = bundle(tmp_path, "other", rows([{**CELLS[0], "runtime": "mlx"}], seed=2))
    line = one_error_line(capsys, [a, "no-such-run"])
    assert "'no-such-run' is neither a result bundle folder" in line and "dvc exp list" in line
    assert "lacks" in one_error_line(capsys, [str(tmp_path), a])            # a folder that is no bundle
    line = one_error_line(capsys, [a, a, "--a-where", "quantz=F16"])
    assert "'quantz' is not a column" in line and "quant," in line
    assert "values: F16" in one_error_line(capsys, [a, a, "--a-where", "quant=F17"])
    assert "write KEY=VALUE" in one_error_line(capsys, [a, a, "--b-where", "quant"])
    assert "no matched cell" in one_error_line(capsys, [a, other])
    h = bundle(tmp_path, "h", rows([CELLS[0], CELLS[2]], seed=3))            # F16 and Q4_K_M, one side filtered
    assert "add --b-where quant=VALUE" in one_error_line(capsys, [h, h, "--a-where", "quant=F16"])
    assert not (tmp_path / "results").exists()


def test_module_runs_and_fails_with_exit_code_2(tmp_path):
    a = bundle(tmp_path, "a", rows(CELLS[:1], seed=1))
    done = subprocess.run([sys.executable, "-m", "localbench.ab", a, a, "--a-where", "nope=1"], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "'nope' is not a column" in done.stderr
    done = subprocess.run([sys.executable, "-m", "localbench.ab", a, a], cwd=tmp_path, check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "results/ab/a_vs_a/ab.json").read_text())["summary"]["decode_tps"]["decided"] == 1


def test_dvc_experiments_are_compared_by_name(tmp_path, monkeypatch):
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "test")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "test@example.com")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.chdir(tmp_path)

    def sh(*cmd):
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"

    (tmp_path / "src").mkdir()
    pd.DataFrame(rows(CELLS[:2], seed=1)).to_parquet("src/base.parquet")
    pd.DataFrame(rows(CELLS[:2], decode=1.3, seed=2)).to_parquet("src/fast.parquet")
    Path("data").mkdir()                                       # the stage writes into it
    Path("make_requests.py").write_text("import shutil, sys\nshutil.copy(f'src/{sys.argv[1]}.parquet', sys.argv[2])\n")
    Path("params.yaml").write_text("variant: base\n")
    Path("dvc.yaml").write_text(f"stages:\n  measure:\n    cmd: {sys.executable} make_requests.py ${{variant}} "
                                "data/requests.parquet\n    deps: [make_requests.py, src]\n    params: [variant]\n"
                                "    outs: [data/requests.parquet]\n")
    dvc = [sys.executable, "-m", "dvc"]
    sh("git", "init", "-q")
    sh(*dvc, "init", "-q")
    sh(*dvc, "repro", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "base")
    sh(*dvc, "exp", "run", "-q", "-S", "variant=fast", "-n", "fast-run")
    result = run(tmp_path, "HEAD", "fast-run")
    assert result["b"] == {"label": "fast-run", "source": "fast-run", "kind": "revision", "where": {}}
    assert set(verdicts(result, "decode_tps")) == {"faster"}
