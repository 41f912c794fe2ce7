"""benchmarks/gpu_run.py's Ollama CUDA backend on the lent GPU machine, started in its own process session from the
code folder:   python benchmarks/gpu/build_ollama.py OLLAMA_DIR

OLLAMA_DIR is the carried .cache/ollama: the Go binary built on the development machine (`make install`), its
build.json and the module's CMake sources (CMakeLists.txt, CMakePresets.json, ml/backend/ggml/ggml). As Ollama's
own Linux release builds it (its Dockerfile: `cmake --preset 'CUDA 13'`, then `cmake --install --component CUDA`),
for CUDA architecture 90 only: libggml-cuda.so (with the CUDA libraries it needs) in lib/ollama/cuda_v13 and
libggml-base.so in lib/ollama, beside bin/ollama, where the binary looks (ml/path.go: ../lib/ollama). The Go binary
has ggml's CPU backend built in, so the CPU variants are not built. build.json gains a "cuda" record.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CUDA_ARCHITECTURES=90", "-DOLLAMA_RUNNER_DIR=cuda_v13",
         "-DCMAKE_DISABLE_FIND_PACKAGE_Vulkan=ON"]


def sh(*argv) -> None:
    print("+", " ".join(map(str, argv)), flush=True)
    subprocess.run([str(a) for a in argv], check=True)


def main(root: Path) -> None:
    t0 = time.time()
    src, build = root / "src", root / "cuda-build"
    nvcc = next((p for p in ("/usr/local/cuda/bin/nvcc",) if Path(p).exists()), "nvcc")
    sh("cmake", "-S", src, "-B", build, *FLAGS, f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DCMAKE_INSTALL_PREFIX={root}")
    sh("cmake", "--build", build, "--target", "ggml-cuda", "--parallel", "16")
    sh("cmake", "--install", build, "--component", "CUDA", "--strip")
    lib = root / "lib" / "ollama"
    for base in (build / "lib" / "ollama").glob("libggml-base.so*"):
        sh("cp", "-P", base, lib / base.name)
    stamp_path = root / "build.json"
    stamp = json.loads(stamp_path.read_text())
    stamp["cuda"] = {"cmake_flags": FLAGS, "nvcc": nvcc, "build_s": round(time.time() - t0, 1),
                     "libraries": sorted(str(p.relative_to(root)) for p in lib.rglob("*.so*"))}
    stamp_path.write_text(json.dumps(stamp, indent=1))
    print(f"ollama CUDA backend built in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
