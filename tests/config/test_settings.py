"""The params.yaml schema: every profile is valid, each class of error is one line naming key, value and
what is allowed, and a stage stops on it before doing any work."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localbench.config.compose import compose
from localbench.config.schema import all_errors, validate

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def broken(path: str, value=None, delete=False) -> dict:
    cfg = copy.deepcopy(PARAMS)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return cfg


def test_committed_params_are_valid():
    assert all_errors(PARAMS) == []


@pytest.mark.parametrize("overrides", [["experiment=ci"], ["experiment=paper"], ["experiment=long"], ["experiment=gpu"],
                                       ["experiment=gpu-load"], ["runtime=reference"],
                                       ["model=synthetic-qwen25-coder-3b"]])
def test_every_profile_is_valid(tmp_path, monkeypatch, overrides):
    monkeypatch.chdir(ROOT)
    compose(overrides, output=tmp_path / "params.yaml")
    assert all_errors(yaml.safe_load((tmp_path / "params.yaml").read_text())) == []


@pytest.mark.parametrize("path, value, expected", [
    ("workload.min_trials", "abc", "params.yaml: workload.min_trials = 'abc' is not allowed: a whole number (conf/workload/)"),
    ("workload.timeout_s", -1, "params.yaml: workload.timeout_s = -1 is not allowed: greater than 0 (conf/workload/)"),
    ("plots.format", "jpg", "params.yaml: plots.format = 'jpg' is not allowed: 'png' or 'svg' (conf/config.yaml)"),
    ("runtime.mlx", "maybe", "params.yaml: runtime.mlx = 'maybe' is not allowed: true or false (conf/runtime/)"),
    ("engine.llamacpp.transports", ["grpc"],
     "params.yaml: engine.llamacpp.transports[0] = 'grpc' is not allowed: 'inprocess', 'server', 'openai' or "
     "'inprocess-rotating' (conf/engine/)"),
])
def test_wrong_value_is_one_line_with_key_value_and_allowed(path, value, expected):
    assert validate(broken(path, value)) == expected


def test_unknown_key_is_an_error_listing_the_allowed_ones():
    """A typo in an SLO name used to give goodput 0 silently."""
    line = validate(broken("load.slo.ttft_ms", 2.0))
    assert line == "params.yaml: unknown key load.slo.ttft_ms (allowed there: ttft_s, tpot_s, e2e_s; conf/load/)"
    assert "unknown key workload.trails" in validate(broken("workload.trails", 3))
    assert "unknown key engine.mlx.workload.lenghts" in validate(broken("engine.mlx.workload.lenghts", [32]))


def test_missing_key_and_inconsistent_group():
    assert validate(broken("workload.min_trials", delete=True)) == \
        "params.yaml: workload.min_trials is missing (a required key; conf/workload/)"
    assert "model.source is 'hf' but there is no model.hf section" in validate(broken("model.source", "hf"))


def test_several_errors_are_counted_in_the_one_line():
    cfg = broken("workload.min_trials", "abc")
    cfg["load"]["seed"] = "x"
    line = validate(cfg)
    assert "\n" not in line and line.endswith("(+1 more: python -m localbench.config.check)")
    assert len(all_errors(cfg)) == 2


def run_in(tmp_path, argv, params_text):
    (tmp_path / "params.yaml").write_text(params_text)
    return subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_first_stage_rejects_a_wrong_value_in_one_line_without_work(tmp_path):
    """`dvc exp run -S workload.min_trials=abc`: download (the first stage) stops before downloading anything."""
    text = yaml.safe_dump(broken("workload.min_trials", "abc"))
    done = run_in(tmp_path, [str(ROOT / "stages/download.py")], text)
    assert done.returncode == 1
    assert done.stderr.strip() == "params.yaml: workload.min_trials = 'abc' is not allowed: a whole number (conf/workload/)"
    assert not (tmp_path / "models").exists()


def test_check_command(tmp_path):
    ok = run_in(tmp_path, ["-m", "localbench.config.check"], (ROOT / "params.yaml").read_text())
    assert ok.returncode == 0 and ok.stdout.strip() == "params.yaml: ok"
    bad = run_in(tmp_path, ["-m", "localbench.config.check"], yaml.safe_dump(broken("load.slo.tpot", 1)))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "unknown key load.slo.tpot" in bad.stderr


def test_malformed_yaml_is_one_line(tmp_path):
    done = run_in(tmp_path, [str(ROOT / "stages/download.py")], "workload: [unclosed\n")
    assert done.returncode == 1 and done.stderr.startswith("params.yaml: cannot be read:")
    assert done.stderr.count("\n") <= 1 and "Traceback" not in done.stderr


def test_engine_models_hold_every_default_and_the_conf_agrees():
    """Each runtime's settings model (named in the registry) builds with no arguments; its defaults are what
    conf/engine/<runtime>.yaml gives, except `transports` (default: every one the runtime offers; a profile picks)
    and the endpoint's extra_body (none unless given)."""
    from localbench.config.registry import RUNTIMES
    from localbench.runtimes import registry

    classes = registry()
    for name, entry in RUNTIMES.items():
        defaults = entry.settings().model_dump()
        conf = yaml.safe_load((ROOT / "conf/engine" / f"{name}.yaml").read_text())
        assert {k: v for k, v in conf.items() if defaults[k] != v and k not in ("transports", "extra_body")} == {}
        assert classes[name].transports == entry.transports == tuple(defaults["transports"])
        assert set(conf["transports"]) <= set(entry.transports), name
        assert classes[name].settings_model is entry.settings


def test_runtimes_receive_typed_settings():
    """A runtime gets its typed model: from a dict of some keys (the rest defaults) or one validated already."""
    from localbench.config.engines import LlamacppEngine
    from localbench.config.params import engine_settings
    from localbench.runtimes import runtime_class

    llamacpp = runtime_class("llamacpp")
    runtime = llamacpp({"n_ctx": 512})
    assert isinstance(runtime.settings, LlamacppEngine)
    assert (runtime.settings.n_ctx, runtime.settings.n_batch, runtime.settings.transports) == \
        (512, 2048, ["inprocess", "server"])
    settings = engine_settings("llamacpp", PARAMS)
    assert llamacpp(settings).settings is settings and settings.n_ctx == PARAMS["engine"]["llamacpp"]["n_ctx"]
    assert engine_settings("mlx", PARAMS).workload_over(PARAMS["workload"]) == \
        {**PARAMS["workload"], **(PARAMS["engine"]["mlx"].get("workload") or {})}


def test_engine_settings_error_is_one_line():
    from localbench.config.params import engine_settings

    with pytest.raises(SystemExit) as err:
        engine_settings("llamacpp", broken("engine.llamacpp.n_ctx", "big"))
    assert str(err.value) == \
        "params.yaml: engine.llamacpp.n_ctx = 'big' is not allowed: a whole number (conf/engine/)"
    assert str(err.value) == validate(broken("engine.llamacpp.n_ctx", "big"))
