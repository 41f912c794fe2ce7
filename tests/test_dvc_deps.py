"""dvc.yaml's deps cover what each stage runs: every localbench file in the static import closure of a stage's
script lies under one of its deps, and DVC really marks the stages that import an edited module (scratch copy)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import pytest
import yaml
from imports import LAYERS, PACKAGE, ROOT, script_closure

CODE_ROOTS = (PACKAGE, "stages", "conf")          # deps under these are code/config; anything else is data
# One module per layer, edited one at a time by the scratch-project test (any module of the layer if one goes).
EDITED = {"core": "core/metrics.py", "config": "config/registry.py", "builds": "builds/llamacpp.py",
          "transport": "transport/clients.py", "runtimes": "runtimes/ollama.py",
          "artifacts": "artifacts/converters/gguf.py", "workload": "workload/prompts.py", "measure": "measure/drift.py",
          "quality": "quality/evaluate.py", "analysis": "analysis/cells.py", "report": "report/tables.py"}


def resolved_stages(root: Path = ROOT) -> dict[str, dict]:
    """dvc.yaml's stages as DVC resolves them (foreach/matrix expanded, ${...} from params.yaml): name -> stage."""
    parsing = pytest.importorskip("dvc.parsing", reason="dvc is not installed: cannot resolve dvc.yaml's stages")
    from dvc.fs import LocalFileSystem

    d = yaml.safe_load((root / "dvc.yaml").read_text())
    repo = SimpleNamespace(fs=LocalFileSystem(), config={})        # all DataResolver reads of a Repo
    return parsing.DataResolver(repo, str(root), d).resolve()["stages"]


def paths_of(stage: dict, *keys: str) -> list[str]:
    """The paths of a stage's deps/outs/metrics/plots (entries may be `path` or `{path: {options}}`)."""
    out = []
    for key in keys:
        for entry in stage.get(key) or []:
            out.append(entry if isinstance(entry, str) else next(iter(entry)))
    return [str(PurePosixPath(p)) for p in out]


def covering(path: str, deps: list[str]) -> list[str]:
    """The deps that are `path` itself or a folder above it."""
    return [d for d in deps if path == d or path.startswith(d.rstrip("/") + "/")]


def dep_to_add(path: str) -> str:
    parts = PurePosixPath(path).parts
    if parts[0] == PACKAGE and len(parts) > 2:
        return f"{PACKAGE}/{parts[1]}"                            # the layer folder
    return path


def stage_closure(stage: dict, root: Path = ROOT) -> set[str]:
    """The files (posix, relative to root) a stage's cmd (one command or a list) runs."""
    cmds = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
    return {p.as_posix() for cmd in cmds for p in script_closure(cmd, root)}


def closures(root: Path = ROOT) -> dict[str, set[str]]:
    """Stage -> the files its cmd runs."""
    return {name: stage_closure(stage, root) for name, stage in resolved_stages(root).items()}


def test_deps_cover_each_stage_import_closure():
    stages = resolved_stages()
    assert stages, "dvc.yaml resolved to no stages"
    missing = []
    for name, stage in stages.items():
        deps = paths_of(stage, "deps")
        uncovered: dict[str, list[str]] = {}                      # dep to add -> the files it would cover
        for path in sorted(stage_closure(stage)):
            if not covering(path, deps):
                uncovered.setdefault(dep_to_add(path), []).append(path)
        for dep, files in uncovered.items():
            missing.append(f"  stage {name!r} ({stage['cmd']}) runs {', '.join(files)}, which no dep covers: "
                           f"add {dep!r} to its deps in dvc.yaml")
    assert not missing, ("dvc.yaml: a stage imports code its deps do not cover (DVC would not rerun it when that "
                         "code changes):\n" + "\n".join(missing))


# --- the same, checked by DVC itself in a scratch copy ------------------------------------------------------------

def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def status(cwd: Path) -> dict:
    done = dvc(cwd, "status", "--json")
    assert done.returncode == 0, f"dvc status failed in {cwd}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}


def scratch_project(dest: Path) -> Path:
    """dvc.yaml, params.yaml, conf/, stages/, localbench/, .dvcignore and .dvc/config copied to `dest` (no SCM,
    no analytics, no update check, caches inside), with a small placeholder for every data dep and out."""
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    for name in ("conf", "stages", PACKAGE):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / ".dvc").mkdir()
    # DVC's own config format (configobj: a dvc dependency)
    from configobj import ConfigObj
    config = ConfigObj(str(ROOT / ".dvc/config")) if (ROOT / ".dvc/config").exists() else ConfigObj()
    config.filename = str(dest / ".dvc/config")
    config.setdefault("core", {}).update({"no_scm": "true", "analytics": "false", "check_update": "false",
                                          "site_cache_dir": str(dest / ".dvc/site-cache")})
    config.write()

    stages = resolved_stages(dest)
    data = {p for s in stages.values() for p in paths_of(s, "deps", "outs", "metrics", "plots")
            if PurePosixPath(p).parts[0] not in CODE_ROOTS and p not in ("params.yaml", "dvc.yaml")}
    for p in sorted(data, key=lambda p: (PurePosixPath(p).suffix == "", p)):    # files first, then folders
        path = dest / p
        if PurePosixPath(p).suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"placeholder for {p}\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            if not any(path.iterdir()):
                (path / "placeholder.txt").write_text(f"placeholder for {p}\n")
    return dest


def changed_by(report: dict, path: str) -> set[str]:
    """Stages `dvc status --json` reports changed because a dep covering `path` changed."""
    out = set()
    for stage, entries in report.items():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and covering(path, list(entry.get("changed deps", {}))):
                out.add(stage.split(":")[-1])                     # "dvc.yaml:name" in some DVC versions
    return out


def test_dvc_status_marks_the_stages_that_import_an_edited_module(tmp_path):
    resolved_stages()                                             # skips when dvc is not installed
    (tmp_path / "project").mkdir()
    project = scratch_project(tmp_path / "project")
    run = closures(project)
    deps = {name: paths_of(stage, "deps") for name, stage in resolved_stages(project).items()}

    done = dvc(project, "commit", "-f", "-q")
    assert done.returncode == 0, f"dvc commit -f failed in the scratch copy:\n{done.stdout}\n{done.stderr}"
    assert status(project) == {}, "after `dvc commit -f` the scratch copy should be up to date"

    problems = []
    for layer in LAYERS:
        folder = project / PACKAGE / layer
        rel = EDITED[layer] if (project / PACKAGE / EDITED[layer]).exists() else \
            next(p.relative_to(project / PACKAGE).as_posix() for p in sorted(folder.rglob("*.py"))
                 if p.name != "__init__.py")
        module = f"{PACKAGE}/{rel}"
        path = project / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited by tests/test_dvc_deps.py\n")
        try:
            report = status(project)
        finally:
            path.write_bytes(original)
        changed = changed_by(report, module)
        importers = {name for name, files in run.items() if module in files}
        uncovered = {name for name, d in deps.items() if not covering(module, d)}
        print(f"{module}: imported by {len(importers)} stages, dvc status marks {len(changed)} for it, "
              f"{len(deps) - len(uncovered)} have a dep covering it")
        for name in sorted(importers - changed):
            problems.append(f"  editing {module}: stage {name!r} imports it but `dvc status` did not mark it; "
                            f"add {dep_to_add(module)!r} to its deps in dvc.yaml")
        for name in sorted({s.split(":")[-1] for s in report} & uncovered):      # only this module was edited
            problems.append(f"  editing {module}: `dvc status` marked stage {name!r}, whose deps do not cover it: "
                            f"{report.get(name)}")
    assert not problems, "dvc status in a scratch copy disagrees with the stages' import closures:\n" + \
        "\n".join(problems)


def test_measure_foreach_is_the_runtime_registry():
    """dvc.yaml's `measure` foreach names the runtimes of localbench.config.registry, each with its module."""
    from localbench.config.registry import RUNTIMES

    foreach = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["measure"]["foreach"]
    assert list(foreach) == list(RUNTIMES), "dvc.yaml measure.foreach must list localbench.config.registry.RUNTIMES"
    for name, item in foreach.items():
        assert item["code"] == f"{PACKAGE}/runtimes/{RUNTIMES[name].module}.py", (name, item)
