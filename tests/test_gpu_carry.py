"""The GPU run's wheels are derived (benchmarks/gpu/carry.py), not listed: every package the code that runs there
imports is on the GPU machine's own list (benchmarks/gpu/device_packages.txt), carried, or reaches it another way;
a new dependency is carried without anyone editing a list; the carry folders stay under one call's limit."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
import carry  # noqa: E402
import gpu_run  # noqa: E402

from localbench.builds import llamacpp as llamacpp_build  # noqa: E402


def test_every_import_there_is_on_the_device_carried_or_accounted_for():
    device = carry.pins(carry.DEVICE)
    carried = carry.to_carry()
    provided = carry.distributions(carry.imported(carry.code_files()))
    for module, dist in provided.items():
        assert dist in device or dist in carried or dist in carry.ELSEWHERE or dist in carry.NOT_THERE, (module, dist)
    # what broke the GPU path before (the config schema's pydantic); the page's renderer stays here
    assert {"pydantic", "pydantic-core", "annotated-types", "typing-inspection"} <= set(carried)
    assert "vl-convert-python" not in carried
    assert not {"torch", "transformers", "numpy", "pandas"} & set(carried)      # the device's own


def test_a_new_dependency_is_carried_with_what_it_requires(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "x.py").write_text("import pydantic\nimport json\nfrom localbench import core\n")
    lock = carry.pins(ROOT / "requirements.lock")
    lacking = carry.to_carry(device={}, lock=lock, root=tmp_path)
    assert {"pydantic", "pydantic-core", "annotated-types", "typing-inspection"} <= set(lacking)
    assert lacking["pydantic"] == lock["pydantic"]
    assert carry.to_carry(device={d: "x" for d in lacking}, lock=lock, root=tmp_path) == {}
    (tmp_path / "stages" / "y.py").write_text("import surely_not_installed_anywhere\n")
    with pytest.raises(SystemExit, match="not installed here"):
        carry.to_carry(device={}, lock=lock, root=tmp_path)


def test_carry_folders_split_big_files_and_stay_under_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_run, "PART_BYTES", 40)
    files = []
    for name, size in (("big.whl", 130), ("a.whl", 30), ("b.whl", 60), ("c.tar.xz", 10)):
        files.append(tmp_path / name)
        files[-1].write_bytes(bytes([len(files)]) * size)
    folders = gpu_run.carry_folders(files, tmp_path / "out", limit=100)
    sizes = [sum(f.stat().st_size for f in d.iterdir()) for d in folders]
    assert all(s <= 100 for s in sizes) and sum(sizes) == 230
    parts = sorted((p for d in folders for p in d.iterdir() if p.name.startswith("big.whl.part")), key=lambda p: p.name)
    assert [p.name for p in parts] == [f"big.whl.part{i}of4" for i in range(1, 5)]
    assert b"".join(p.read_bytes() for p in parts) == (tmp_path / "big.whl").read_bytes()


def test_build_sources_then_the_stages_wheels_travel_in_the_first_call(tmp_path):
    """The sources of the builds go to carry1 whatever their size (the builds start with the first call), then the
    wheels the stages import before MLX's bigger ones (a first call runs every stage but MLX's)."""
    files = []
    for name, size in (("mlx_cuda_13-1.whl", 45), ("w2.whl", 40), ("llama-src.tar.xz", 30), ("ollama.tar.xz", 20)):
        files.append(tmp_path / name)
        files[-1].write_bytes(b"x" * size)
    first = gpu_run.carry_folders(files, tmp_path / "out", limit=100)[0]
    assert {p.name for p in first.iterdir()} == {"llama-src.tar.xz", "ollama.tar.xz", "w2.whl"}


def test_a_lease_converts_every_quant_of_the_profile_and_pack_overrides_narrow_it(tmp_path, monkeypatch):
    """The frameworks part converts PyTorch's int8 / int4 beside bf16 (not bf16 alone), and `pack -S` overrides reach
    the gpu profile's params (not gpu-load's)."""
    monkeypatch.chdir(ROOT)
    (tmp_path / "ctl").mkdir()
    gpu_run.compose_params(tmp_path / "ctl", ("workload.lengths=[2048]", "convert.mlx.learned_quants=[awq_4]"))
    device = object.__new__(gpu_run.Device)
    device.keep = tmp_path
    assert device.quants("hf") == ["bf16", "int8", "int4"]
    assert device.quants("mlx") == ["bf16", "4bit", "awq_4"]
    assert device.quants("gguf")[0] == "F16"
    assert yaml.safe_load((tmp_path / "ctl" / "params.gpu.yaml").read_text())["workload"]["lengths"] == [2048]
    assert yaml.safe_load((tmp_path / "ctl" / "params.gpu-load.yaml").read_text())["workload"]["lengths"] != [2048]


def test_the_stages_wait_until_every_carried_wheel_but_mlx_is_installed(tmp_path):
    """A first call that brings half the wheels runs no stage (each would fail on an import); MLX's wheels, which
    its own stages wait for, do not hold the others back."""
    (tmp_path / "ctl").mkdir()
    (tmp_path / "ctl" / "wheel_sizes.json").write_text(json.dumps(
        {"pydantic_core-2.33.2-cp312.whl": 1, "omegaconf-2.3.0-py3.whl": 1, "mlx_cuda_13-0.32.4-py3.whl": 1}))
    device = object.__new__(gpu_run.Device)
    device.keep, device.done_dir = tmp_path, tmp_path / "done"
    device.done_dir.mkdir()
    device.mark("wheel-omegaconf-2.3.0-py3.whl")
    assert device.wheels_missing() == ["pydantic_core-2.33.2-cp312.whl"]
    device.mark("wheel-pydantic_core-2.33.2-cp312.whl")
    assert device.wheels_missing() == []


def test_a_measure_stage_waits_for_its_own_conversions(tmp_path, monkeypatch):
    """A call whose budget ends between two conversions measures nothing of them: measured on the half converted,
    the stage would end `done` with the other quant's cells missing (the H200 lease of 2026-12-06 did so)."""
    monkeypatch.chdir(ROOT)
    (tmp_path / "ctl").mkdir()
    gpu_run.compose_params(tmp_path / "ctl", ())
    (tmp_path / "ctl" / "part").write_text("llamacpp-load\n")
    device = object.__new__(gpu_run.Device)
    device.keep, device.work, device.code, device.done_dir = tmp_path, tmp_path, tmp_path, tmp_path / "done"
    device.done_dir.mkdir()
    device.mark("build")                                # llama.cpp built
    ran, refused = [], {"convert-gguf-Q4_K_M"}         # no time left for it in the first call

    def run(step, argv, params="gpu", min_s=20, check=True):
        if device.done(step):
            return True
        if step in refused:
            return False
        ran.append(step)
        device.mark(step)
        if step.startswith("measure-"):                # a measure stage writes data/raw/<runtime>/
            (tmp_path / "data" / "raw" / "llamacpp" / step).mkdir(parents=True)
        return True

    device.run, device.say = run, lambda msg: None
    device.build_ready = device.builds_idle = lambda *a, **k: True
    device.steps()
    assert "convert-gguf-F16" in ran and "measure-llamacpp" not in ran and "measure-llamacpp-load" not in ran
    assert ran.index("link-check") < ran.index("convert-gguf-F16")      # the model-free check right after the build
    refused.clear()                                     # the next call converts the rest, then measures
    device.steps()
    assert ran.index("convert-gguf-Q4_K_M") < ran.index("measure-llamacpp") < ran.index("measure-llamacpp-load")
    raw = tmp_path / "data" / "raw"                     # the sweep's rows apart, the single-stream ones back in place
    assert (raw / "llamacpp" / "measure-llamacpp").is_dir()
    assert (raw / "llamacpp-load" / "measure-llamacpp-load").is_dir()


@pytest.mark.skipif(bool(llamacpp_build.missing()), reason=f"llama.cpp not built: {llamacpp_build.missing()}")
def test_the_model_free_check_finds_no_cxx_runtime_in_the_cpu_build(tmp_path):
    """inprocess_check.py --imports (what a GPU lease runs right after its build) on the build here: the CPU build's
    libraries need libstdc++.so and export none of its functions, and share a process with pyarrow (the CUDA build
    on the H200 did neither: README, the in-process check)."""
    out = tmp_path / "link_check.json"
    subprocess.run([sys.executable, "benchmarks/gpu/inprocess_check.py", "--imports", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    r = json.loads(out.read_text())
    assert r["import"]["rc"] == 0 and r["import-then-arrow"]["rc"] == 0
    libs = r["cxx_runtime"]
    assert any(name.startswith("libllama") for name in libs)
    assert all(v["needs_libstdcxx"] and v["std_text_symbols"] == 0 for v in libs.values()), libs
