"""Install llama.cpp for the project: `python -m localbench.builds.llamacpp` (idempotent).

One compile of the llama.cpp vendored in the llama-cpp-python sdist (pinned below) gives the shared
libraries and the tools llama-server, llama-bench, llama-quantize, llama-perplexity, llama-imatrix in
.cache/llamacpp/build/bin; the `llama_cpp` Python package is then installed from the same sdist without
compiling llama.cpp again, and the built libraries are copied into its lib/ folder. A second run
finds everything in place and does nothing. Metal is on by default on macOS; for CUDA run
`CMAKE_ARGS="-DGGML_CUDA=on" python -m localbench.builds.llamacpp` (any CMAKE_ARGS are passed to CMake).
The converter script (convert_hf_to_gguf.py + its vendored gguf-py) is used from the unpacked sdist.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{VERSION}"
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "llamacpp"
TOOLS = ("llama-server", "llama-bench", "llama-quantize", "llama-perplexity", "llama-imatrix")
BASE_CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF", "-DGGML_NATIVE=ON",
    # libraries and tools find each other next to themselves, so bin/ and the package's lib/ work
    "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
    "-DCMAKE_INSTALL_RPATH=" + ("@loader_path" if sys.platform == "darwin" else "$ORIGIN"),
)
# -march=native turns AMX on where the CPU has it, but VMs/sandboxes that do not grant AMX state die with
# SIGILL in ggml's AMX kernels: keep AMX off (CMAKE_ARGS may set other flags).
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
STAMP = "localbench-build.json"
FIX = "run `python -m localbench.builds.llamacpp`"


class LlamaCppMissing(RuntimeError):
    """llama.cpp (tools, converter or Python package) is not installed for this project."""


def source_dir() -> Path:
    """The unpacked sdist (llama-cpp-python with vendor/llama.cpp)."""
    return CACHE_DIR / SDIST_NAME


def build_dir() -> Path:
    return CACHE_DIR / "build"


def tool(name: str) -> Path:
    """Path of a built llama.cpp tool (llama-server, llama-bench, ...); one clear line if missing."""
    path = build_dir() / "bin" / (name + (".exe" if os.name == "nt" else ""))
    if not path.exists():
        raise LlamaCppMissing(f"llama.cpp tool {name} not found at {path}: {FIX}")
    return path


def missing() -> str:
    """Why llama.cpp cannot run here (tools, converter or Python package missing), or "" when it can."""
    try:
        tool("llama-server")
        gguf_converter()
        import llama_cpp  # noqa: F401
    except (LlamaCppMissing, ImportError, OSError, RuntimeError) as exc:
        return str(exc)
    return ""


def gguf_converter() -> tuple[Path, dict[str, str]]:
    """convert_hf_to_gguf.py and the environment that puts its vendored gguf-py first on PYTHONPATH."""
    llama = source_dir() / "vendor" / "llama.cpp"
    script = llama / "convert_hf_to_gguf.py"
    if not script.exists():
        raise LlamaCppMissing(f"llama.cpp converter not found at {script}: {FIX}")
    path = os.pathsep.join(p for p in (str(llama / "gguf-py"), os.environ.get("PYTHONPATH", "")) if p)
    return script, {**os.environ, "PYTHONPATH": path}


def package_libs(directory: Path) -> list[Path]:
    """The built libraries the Python package loads (llama, ggml*, mtmd), with their versioned links."""
    return sorted(p for p in directory.iterdir()
                  if p.name.startswith(("libllama.", "libggml", "libmtmd.", "llama.", "ggml", "mtmd."))
                  and any(ext in p.name for ext in (".so", ".dylib", ".dll")))


# no symbol of a static archive exported from a shared library (-Xlinker: understood by both g++ and nvcc), and the
# shared CUDA runtime only (ggml links CUDA::cudart; CMake's default adds the static one too)
CUDA_FIX = ["-DCMAKE_CUDA_RUNTIME_LIBRARY=Shared", "-DCMAKE_SHARED_LINKER_FLAGS=-Xlinker --exclude-libs=ALL"]


def cmake_args() -> list[str]:
    """Base flags plus the user's CMAKE_ARGS (e.g. -DGGML_CUDA=on), which come last and win. CUDA builds (CUDA_FIX):
    on the lent GPU image each library carried a static copy of libstdc++ (none needed libstdc++.so) and exported
    it, and pyarrow's and libllama's calls bound to libggml-cuda.so's copy: the in-process crash (README: the
    in-process check)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64") and os.name != "nt"
    amx = [f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"] if x86 else []
    user = shlex.split(os.environ.get("CMAKE_ARGS", ""))
    cuda = CUDA_FIX if any(re.fullmatch(r"-DGGML_CUDA(:BOOL)?=(ON|1|TRUE|YES)", a, re.I) for a in user) else []
    return [*BASE_CMAKE_ARGS, *amx, *cuda, *user]


def _run(argv: list[str], **kwargs) -> None:
    print("+", " ".join(map(str, argv)), flush=True)
    subprocess.run([str(a) for a in argv], check=True, **kwargs)


def fetch_sdist() -> Path:
    """Download (once) and unpack (once) the pinned sdist; return the unpacked folder."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"{SDIST_NAME}.tar.gz"
    if not tarball.exists():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              f"llama-cpp-python=={VERSION}", "-d", CACHE_DIR])
    if not (source_dir() / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        with tarfile.open(tarball) as tar:
            tar.extractall(CACHE_DIR, filter="data")
    return source_dir()


def build_tools(jobs: int | None = None) -> Path:
    """Configure and build llama.cpp (libs + TOOLS) unless a build with the same flags is complete."""
    if shutil.which("cmake") is None:
        raise LlamaCppMissing("cmake not found: install CMake >= 3.21 (apt install cmake / brew install cmake)")
    out = build_dir()
    args = cmake_args()
    stamp = out / STAMP
    done = stamp.exists() and json.loads(stamp.read_text()).get("cmake_args") == args
    if done and all((out / "bin" / t).exists() for t in TOOLS):
        return out
    src = source_dir() / "vendor" / "llama.cpp"
    _run(["cmake", "-S", src, "-B", out, *args])
    _run(["cmake", "--build", out, "--config", "Release", "-j", str(jobs or os.cpu_count() or 2),
          "--target", *TOOLS])
    stamp.write_text(json.dumps({"version": VERSION, "cmake_args": args}, indent=1))
    return out


def installed_package() -> Path | None:
    """The installed llama_cpp package folder when it is the pinned version, else None."""
    try:
        dist = importlib.metadata.distribution("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != VERSION:
        return None
    return Path(dist.locate_file("llama_cpp"))


def _same(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    return b.exists() and a.stat().st_size == b.stat().st_size and a.stat().st_mtime_ns == b.stat().st_mtime_ns


def install_package() -> Path:
    """pip-install llama_cpp from the sdist without its CMake build of llama.cpp; copy our libs in."""
    pkg = installed_package()
    if pkg is None:
        env = {**os.environ, "CMAKE_ARGS": "-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF"}
        _run([sys.executable, "-m", "pip", "install", "--no-cache-dir", source_dir()], env=env)
        importlib.invalidate_caches()
        pkg = installed_package()
        if pkg is None:
            raise RuntimeError(f"llama_cpp_python {VERSION} not found after pip install")
    lib = pkg / "lib"
    lib.mkdir(exist_ok=True)
    for src in package_libs(build_dir() / "bin"):
        dst = lib / src.name
        if _same(src, dst):
            continue
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        shutil.copy2(src, dst, follow_symlinks=False)
    return pkg


def main() -> None:
    t0 = time.perf_counter()
    fetch_sdist()
    out = build_tools()
    pkg = install_package()
    print(f"llama.cpp {VERSION}: tools in {out / 'bin'}, llama_cpp in {pkg} "
          f"({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()


BUFFER_LINE = re.compile(r"(\S+)\s+(model|KV|compute|output|RS) buffer size\s*=\s*([\d.]+) MiB")
BUFFER_KEYS = {"model": "model_buffer_bytes", "KV": "kv_buffer_bytes", "compute": "compute_buffer_bytes",
               "output": "output_buffer_bytes", "RS": "recurrent_state_buffer_bytes"}


def buffer_sizes(log: str) -> dict[str, int]:
    """llama.cpp's own buffer sizes from its log ('CPU KV buffer size = 45.00 MiB', ...), summed per kind.

    The last load in the log counts; device_mem_bytes is their total.
    """
    sizes: dict[str, int] = {}
    for line in log.splitlines():
        if "load_model: loading model" in line or "llama_model_loader: loaded meta data" in line:
            sizes = {}   # a later load in the same log starts over
        m = BUFFER_LINE.search(line)
        if m:
            key = BUFFER_KEYS[m.group(2)]
            sizes[key] = sizes.get(key, 0) + int(float(m.group(3)) * 2**20)
    if sizes:
        sizes["device_mem_bytes"] = sum(sizes.values())
    return sizes


def output_tail(text: str, lines: int = 15) -> str:
    """The last lines of a llama.cpp tool's output, for error messages."""
    return "\n".join(text.strip().splitlines()[-lines:])
