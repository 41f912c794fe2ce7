"""Hydra composition: the committed params.yaml is what conf/ composes to, and every profile composes."""
from pathlib import Path

import pytest
import yaml

from localbench.config.compose import compose

ROOT = Path(__file__).resolve().parents[2]


def test_committed_params_match_conf(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    compose([], output=tmp_path / "params.yaml")
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == yaml.safe_load((ROOT / "params.yaml").read_text()), \
        "params.yaml is stale: run `python -m localbench.config.compose` and commit it"


@pytest.mark.parametrize("profile", ["default", "ci", "paper", "gpu"])
def test_profiles_compose(tmp_path, monkeypatch, profile):
    monkeypatch.chdir(ROOT)
    compose([f"experiment={profile}"], output=tmp_path / "params.yaml")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert {"model", "runtime", "workload", "engine", "convert", "plots", "report"} <= set(params)


def test_runtime_group_selects_one_runtime(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    compose(["runtime=mlx"], output=tmp_path / "params.yaml")
    selected = yaml.safe_load((tmp_path / "params.yaml").read_text())["runtime"]
    assert [k for k, v in selected.items() if v] == ["mlx"]
