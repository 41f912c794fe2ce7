"""Build Ollama for the project from its Go module: `python -m localbench.builds.ollama` (idempotent).

The pinned release (VERSION, the one place it is set) is fetched with `go mod download`, copied out of
GOMODCACHE into .cache/ollama/src and built there with cgo (`go build`, as Ollama's development guide
does for the CPU) into .cache/ollama/bin/ollama. The module zip drops llama.cpp's vendor/ headers
(nlohmann, stb, miniaudio): they are copied in from the pinned llama-cpp-python sdist. ggml's CPU code is
compiled with -march=native (AMX off, as in llamacpp_build) — a plain cgo build has no AVX2 and would
handicap Ollama against llama.cpp. build.json records version, Go, flags, build time and the CPU's
features. Without Go (or with a Go older than Ollama's go.mod needs) one line says so, skip.json keeps
that reason for the runtime's probe, and nothing else happens. A second run finds the build and returns.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

from localbench.builds import llamacpp as llamacpp_build

VERSION = "0.17.4"
MODULE = "github.com/ollama/ollama"
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "ollama"
BINARY = CACHE_DIR / "bin" / "ollama"
STAMP = CACHE_DIR / "build.json"
SKIP = CACHE_DIR / "skip.json"
FIX = "run `make install` (or `python -m localbench.builds.ollama`)"
CPU_FLAGS = ("sse4_2", "avx", "f16c", "fma", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def cflags() -> str:
    """C/C++ flags for cgo: -O3 -march=native (AMX off on x86-64, see llamacpp_build.NO_AMX)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return "-O3 -march=native" + (" " + llamacpp_build.NO_AMX if x86 else "")


def cpu_features() -> dict:
    """The CPU model and the SIMD flags that matter to ggml (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"machine": platform.machine()}
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", info, re.M) or ["", ""])[1].split())
    return {"machine": platform.machine(), "model": model.group(1) if model else "",
            "flags": [f for f in CPU_FLAGS if f in flags]}


def skip(reason: str) -> None:
    """Print the one line and keep the reason for the probe (engine.ollama rows stay unavailable)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    SKIP.write_text(json.dumps({"version": VERSION, "reason": reason}))
    print(f"ollama {VERSION}: skipped, {reason}", flush=True)


def skip_reason() -> str | None:
    """Why the last build step skipped Ollama, None if it did not."""
    try:
        return json.loads(SKIP.read_text())["reason"]
    except (OSError, ValueError, KeyError):
        return None


def built() -> dict | None:
    """The build stamp when the pinned version's binary is in place, else None."""
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return None
    return stamp if stamp.get("version") == VERSION and BINARY.exists() else None


def executable() -> str | None:
    """The binary `make install` built, else `ollama` on PATH, else None."""
    return str(BINARY) if built() else shutil.which("ollama")


def server_env(port: int, models: Path) -> dict[str, str]:
    """The environment of an `ollama serve` the project launches: 127.0.0.1:<port>, its own models folder,
    no prompt history, no cloud models."""
    return {"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(models), "OLLAMA_NOHISTORY": "1",
            "OLLAMA_NO_CLOUD": "1"}


def create(exe: str, host: str, name: str, modelfile: Path, quantize: str | None = None) -> None:
    """`ollama create <name> -f <modelfile> [--quantize <type>]` against the server at `host`; one clear error."""
    argv = [exe, "create", name, "-f", str(modelfile), *(["--quantize", quantize] if quantize else [])]
    done = subprocess.run(argv, capture_output=True, text=True,
                          env={**os.environ, "OLLAMA_HOST": host.removeprefix("http://")})
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"`{' '.join(argv[1:])}` failed: {tail[0]}; see the server log")


def model_blob(models: Path, name: str) -> Path:
    """The GGUF blob of model `name` (tag latest) in an Ollama models folder, from its manifest."""
    manifest = json.loads((models / "manifests" / "registry.ollama.ai" / "library" / name / "latest").read_text())
    digest = next(layer["digest"] for layer in manifest["layers"]
                  if layer["mediaType"] == "application/vnd.ollama.image.model")
    return models / "blobs" / digest.replace(":", "-")


def _go(*args: str, capture: bool = True, cwd: Path | None = None, env: dict | None = None):
    env = {**os.environ, "GOTOOLCHAIN": "local", **(env or {})}
    return subprocess.run(["go", *args], capture_output=capture, text=True, env=env, cwd=cwd)


def copy_source(module_dir: Path, dst: Path) -> None:
    """The module's files (read-only in GOMODCACHE) as a writable tree, plus llama.cpp's vendor/ headers."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(module_dir, dst, copy_function=shutil.copyfile)
    for root, dirs, _files in os.walk(dst):
        os.chmod(root, 0o755)
    vendor = llamacpp_build.fetch_sdist() / "vendor" / "llama.cpp" / "vendor"
    shutil.copytree(vendor, dst / "llama" / "llama.cpp" / "vendor", copy_function=shutil.copyfile)


def build_ollama() -> dict | None:
    """Build the pinned Ollama unless done; the stamp, or None when skipped (one line printed)."""
    stamp = built()
    if stamp:
        BINARY.touch()   # newer than this file again, so make's target is satisfied
        print(f"ollama {VERSION}: up to date ({BINARY})", flush=True)
        return stamp
    if shutil.which("go") is None:
        skip("no `go` on PATH (Ollama is built from its Go module; install Go >= 1.24)")
        return None
    go_version = _go("env", "GOVERSION").stdout.strip()
    done = _go("mod", "download", "-json", f"{MODULE}@v{VERSION}")
    if done.returncode:
        raise RuntimeError(f"`go mod download {MODULE}@v{VERSION}` failed ({done.stderr.strip()[-200:]}); "
                           "check access to the Go module proxy (GOPROXY)")
    info = json.loads(done.stdout)
    need = re.search(r"^go\s+(\S+)", Path(info["GoMod"]).read_text(), re.M).group(1)
    if _version_tuple(go_version) < _version_tuple(need):
        skip(f"{go_version} on PATH is older than go {need} that Ollama {VERSION}'s go.mod requires")
        return None
    t0 = time.perf_counter()
    src = CACHE_DIR / "src"
    copy_source(Path(info["Dir"]), src)
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    flags = cflags()
    ldflags = f"-s -w -X {MODULE}/version.Version={VERSION}"
    print(f"+ (cd {src} && CGO_CFLAGS='{flags}' CGO_CXXFLAGS='{flags}' go build -trimpath "
          f"-ldflags '{ldflags}' -o {BINARY} .)", flush=True)
    done = _go("build", "-trimpath", "-ldflags", ldflags, "-o", str(BINARY), ".", cwd=src,
               env={"CGO_ENABLED": "1", "CGO_CFLAGS": flags, "CGO_CXXFLAGS": flags}, capture=False)
    if done.returncode:
        raise RuntimeError(f"`go build` of Ollama {VERSION} failed (exit {done.returncode}, output above); "
                           "needs a C/C++ compiler for cgo (apt install build-essential)")
    stamp = {"version": VERSION, "module": f"{MODULE}@v{VERSION}", "sum": info.get("Sum", ""), "go": go_version,
             "cgo_cflags": flags, "ldflags": ldflags, "build_s": round(time.perf_counter() - t0, 1),
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_features(), "binary": str(BINARY)}
    STAMP.write_text(json.dumps(stamp, indent=1))
    SKIP.unlink(missing_ok=True)
    print(f"ollama {VERSION}: built {BINARY} in {stamp['build_s']:.0f}s", flush=True)
    return stamp


if __name__ == "__main__":
    build_ollama()
