"""benchmarks/gpu_run.py's llama.cpp build on the lent GPU machine (no package registry), started in its own
process session from the code folder:  CMAKE_ARGS="..." python benchmarks/gpu/build_llamacpp.py SITE

The tools and shared libraries (CMAKE_ARGS from the caller: CUDA, sm_90), then the in-process bindings:
pip-installed from the sdist without compiling llama.cpp again (offline: no build isolation), else the sdist's
llama_cpp package copied into SITE/ with the libraries in its lib/.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from localbench.builds import llamacpp as b


def main(site: Path) -> None:
    t0 = time.time()
    b.fetch_sdist()        # the carried source is unpacked and its tarball touched: nothing is downloaded
    print("tools in", b.build_tools(), f"({time.time() - t0:.0f}s)", flush=True)
    env = {**os.environ, "CMAKE_ARGS": "-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF"}
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-build-isolation", "--no-cache-dir", str(b.source_dir())], env=env, check=False)
    if r.returncode == 0 and b.installed_package():
        print("bindings installed:", b.install_package())
    else:
        pkg = site / "llama_cpp"
        shutil.copytree(b.source_dir() / "llama_cpp", pkg, dirs_exist_ok=True)
        (pkg / "lib").mkdir(exist_ok=True)
        for lib in b.package_libs(b.build_dir() / "bin"):
            shutil.copy2(lib, pkg / "lib" / lib.name, follow_symlinks=False)
        print("bindings: pip failed, the sdist's llama_cpp copied to", pkg)
    print(f"build done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
