"""Why llama.cpp in-process crashed on the lent GPU: one load + one short request in fresh processes, seven ways, and
where the libraries meet (shared symbols, cross-library bindings).

Run by benchmarks/gpu_run.py from the code folder (params.yaml = the gpu profile's) once llama.cpp is built and the
F16 GGUF converted:   python benchmarks/gpu/inprocess_check.py OUT.json
and, with no model, right after the build (whether the build still exports a C++ runtime and whether
`import llama_cpp; import pyarrow` survives):   python benchmarks/gpu/inprocess_check.py --imports OUT.json

  bare            import llama_cpp, nothing else; the F16 GGUF's path given on the command line
  arrow-after     bare, then `import pyarrow` before the load (what the project's imports do: pandas, Parquet)
  arrow-first     `import pyarrow` first, then bare
  arrow-first-cpu the same with no layer offloaded (n_gpu_layers=0): does the crash need CUDA buffers?
  bare+torch      bare after torch made a CUDA context (torch's own CUDA libraries loaded first)
  runtime         the project's runtime as the measure stage runs it (engine.llamacpp settings of the profile: n_ctx,
                  flash attention, YaRN; pandas has imported pyarrow)
  runtime+torch   the same after torch made a CUDA context (the drift probe's)

Each child prints STEP lines as it goes (so a crash names the step it died in) and, right before the load, the
shared libraries it has mapped that could clash (C++ runtime, OpenMP, CUDA, ggml, Arrow); the record keeps exit code
(a negative one is the signal), seconds, the last step, the maps, the output and the stderr tail (faulthandler's
traceback). `ldd` of the bindings' libraries and the native backtraces (gdb, else cuda-gdb: the frames only) of the
three import-order variants that crash are kept, with three views of where the libraries meet: whether each of the
bindings' libraries needs libstdc++.so or exports a static copy of its functions, the dynamic symbols
the bindings' libraries define that pyarrow's or torch's also define (`nm -D`, with their kinds: `u` is a GNU unique
symbol, bound once per process whatever the load flags), and the symbol bindings the dynamic linker made between
them in `arrow-after` (LD_DEBUG=bindings).
"""
import functools
import glob
import json
import os
import shutil
import subprocess
import sys
import time

KEYS = ("stdc++", "gomp", "libomp", "iomp", "cublas", "cudart", "libcuda.", "nccl", "ggml", "llama", "arrow",
        "jemalloc", "mimalloc", "tcmalloc")
STEP = "import sys; step = lambda s: print('STEP', s, flush=True); "
TORCH = "step('torch'); import torch; torch.zeros(1, device='cuda'); "
ARROW = "step('pyarrow'); import pyarrow; "
LLAMA = "step('import llama_cpp'); import llama_cpp; "
MAPS = ("print('MAPS', sorted({l.split()[-1] for l in open('/proc/self/maps') if any(k in l for k in "
        f"{KEYS!r})}}), flush=True); print('TORCH', 'torch' in sys.modules, flush=True); ")
LOAD = ("step('load'); m = llama_cpp.Llama(model_path=sys.argv[1], n_gpu_layers=99, n_ctx=4096, verbose=True); "
        "step('generate'); print('OUT', m('def f(x):', max_tokens=8)['usage'], flush=True); step('exit'); ")
CPU_LOAD = LOAD.replace("n_gpu_layers=99", "n_gpu_layers=0")
RUNTIME = ("step('import localbench'); import pandas; from localbench.artifacts import catalog; "
           "from localbench.config.params import engine_settings, params; "
           "from localbench.measure.session import load_runtime; from localbench.core.types import Request; "
           "cfg = params('model', 'runtime', 'engine', 'workload', 'convert', 'load'); "
           "rt = load_runtime('llamacpp', engine_settings('llamacpp', cfg)); "
           "a = next(a for a in catalog.artifacts(rt.formats, cfg['convert'])[0] if a.quant == 'F16'); " + MAPS +
           "step('load'); s = rt.load(a, 'inprocess'); step('generate'); "
           "print('OUT', list(s.stream(Request('p', tuple(range(100, 1124)), '', 16)))[-1], flush=True); "
           "step('exit'); ")
VARIANTS = {"bare": LLAMA + MAPS + LOAD, "arrow-after": LLAMA + ARROW + MAPS + LOAD,
            "arrow-first": ARROW + LLAMA + MAPS + LOAD, "arrow-first-cpu": ARROW + LLAMA + MAPS + CPU_LOAD,
            "bare+torch": TORCH + LLAMA + MAPS + LOAD,
            "runtime": RUNTIME, "runtime+torch": TORCH + RUNTIME}
IMPORT_WAYS = {"import": LLAMA + MAPS + "print('OUT', llama_cpp.__version__, flush=True); ",
               "import-then-arrow": LLAMA + ARROW + MAPS + "print('OUT', pyarrow.__version__, flush=True); "}
OTHERS = ("pyarrow", "torch")           # packages whose libraries met llama.cpp's CUDA build in one process


def f16_path() -> str:
    from localbench.artifacts import catalog
    from localbench.config.params import params

    return next(a.path for a in catalog.artifacts(("gguf",), params("convert")["convert"])[0] if a.quant == "F16")


def bindings() -> dict:
    """Where llama_cpp is imported from, and what its libraries link against (a fresh process: nothing loaded)."""
    r = subprocess.run([sys.executable, "-c", "import llama_cpp, os; print(os.path.dirname(llama_cpp.__file__))"],
                       capture_output=True, text=True)
    pkg = r.stdout.strip()
    out = {"package": pkg or r.stderr[-500:], "python": sys.version, "executable": sys.executable, "ldd": {}}
    if pkg and shutil.which("ldd"):
        for lib in sorted(glob.glob(f"{pkg}/lib/lib*.so"))[:8]:
            out["ldd"][lib] = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout[-2500:]
    return out


def libraries_of(package: str) -> list[str]:
    """The shared libraries an installed package ships (found without importing it), each file once."""
    r = subprocess.run([sys.executable, "-c", f"import importlib.util as u; "
                        f"print(u.find_spec({package!r}).submodule_search_locations[0])"],
                       capture_output=True, text=True)
    root = r.stdout.strip()
    found = glob.glob(f"{root}/**/lib*.so*", recursive=True) if root else []
    return sorted({os.path.realpath(p) for p in found})          # not its symlinks


@functools.cache
def defined_symbols(lib: str) -> dict[str, str]:
    """Dynamic symbols `lib` defines -> their nm kind (T, W, V, u, ...)."""
    r = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, timeout=120)
    return {f[2]: f[1] for f in (line.split() for line in r.stdout.splitlines()) if len(f) == 3}


def shared_symbols() -> dict:
    """Per library of the bindings, the dynamic symbols another package's library defines too (nm -D)."""
    if not shutil.which("nm"):
        return {"error": "nm not installed"}
    ours = {lib: defined_symbols(lib) for lib in libraries_of("llama_cpp")}
    out = {}
    for package in OTHERS:
        for lib in libraries_of(package):
            try:
                theirs = defined_symbols(lib)
            except subprocess.TimeoutExpired:
                continue
            for mine, syms in ours.items():
                common = sorted(set(syms) & set(theirs))
                if common:
                    out[f"{os.path.basename(mine)} & {package}/{os.path.basename(lib)}"] = {
                        "n": len(common), "unique": [c for c in common if "u" in (syms[c], theirs[c])][:40],
                        "first": [f"{c} ({syms[c]}/{theirs[c]})" for c in common[:25]]}
    return out


def cxx_runtime() -> dict:
    """Per library of the bindings: does it need libstdc++.so, and which of libstdc++'s own functions does it export
    (strong `T` symbols of std::, which only a static copy of the C++ runtime brings)? needs_libstdcxx is None
    where objdump is missing."""
    out = {}
    for lib in libraries_of("llama_cpp"):
        needed = subprocess.run(["objdump", "-p", lib], capture_output=True, text=True).stdout if \
            shutil.which("objdump") else None
        std = sorted(n for n, kind in defined_symbols(lib).items() if kind == "T" and n.startswith(("_ZNSt", "_ZSt")))
        out[os.path.basename(lib)] = {"needs_libstdcxx": None if needed is None else "libstdc++.so" in needed,
                                      "std_text_symbols": len(std), "examples": std[:12]}
    return out


def cross_bindings(code: str, model: str) -> dict:
    """The symbol bindings the dynamic linker made between the bindings' libraries and pyarrow's or torch's while
    `code` ran (LD_DEBUG=bindings)."""
    log = f"/tmp/ld_bindings.{os.getpid()}"
    env = {**os.environ, "LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": log}
    try:
        subprocess.run([sys.executable, "-c", code, model], env=env, capture_output=True, timeout=240)
    except subprocess.TimeoutExpired:
        pass
    mine, theirs = ("ggml", "llama", "cublas", "cudart"), ("arrow", "parquet", "torch", "c10")
    found, n = [], 0
    for path in glob.glob(log + ".*"):
        with open(path, errors="replace") as f:
            for line in f:
                if "binding file" not in line:
                    continue
                src, _, dst = line.partition(" to ")
                if (any(k in src for k in mine) and any(k in dst for k in theirs)) or \
                        (any(k in src for k in theirs) and any(k in dst for k in mine)):
                    n += 1
                    if len(found) < 60:
                        found.append(line.split(":", 1)[-1].strip())
        os.unlink(path)
    return {"n": n, "first": found}


def backtrace(code: str, model: str) -> str:
    """A native backtrace of one variant: gdb, else cuda-gdb (the GPU image has no gdb; cuda-gdb debugs host code)."""
    gdb = shutil.which("gdb") or shutil.which("cuda-gdb") or next(
        (p for p in ("/usr/local/cuda/bin/cuda-gdb",) if os.path.exists(p)), None)
    if not gdb:
        return "neither gdb nor cuda-gdb installed"
    try:
        r = subprocess.run([gdb, "-batch", "-ex", "run", "-ex", "bt 30", "--args", sys.executable, "-c", code, model],
                           capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        return f"{gdb}: timeout; {str(exc.stdout or '')[-3000:]}"
    frames = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith(("#", "Thread", "Program received"))]
    return f"{gdb}:\n" + "\n".join(frames)[:8000]


def run_way(code: str, model: str) -> dict:
    """One way in a fresh process: exit code (negative: the signal), seconds, last step, maps, output, stderr tail."""
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", STEP + code, model], capture_output=True,
                           text=True, timeout=240)
        rc, stdout, stderr = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
    lines = stdout.splitlines()
    first = lambda tag: next((l[len(tag) + 1:] for l in lines if l.startswith(tag + " ")), None)   # noqa: E731
    return {"rc": rc, "s": round(time.time() - t0, 1),
            "last_step": ([l[5:] for l in lines if l.startswith("STEP ")] or [None])[-1],
            "maps": first("MAPS"), "torch_imported": first("TORCH"), "out": first("OUT"), "stderr_tail": stderr[-3000:]}


def main(out: str, imports_only: bool = False) -> None:
    """The seven ways and the three views; `imports_only` (no model needed, right after the build): the C++ runtime
    view and the two import ways (`import llama_cpp`, then pyarrow: the first crash on the H200)."""
    model = "" if imports_only else f16_path()
    results = {"bindings": bindings(), "cxx_runtime": cxx_runtime()}
    ways = IMPORT_WAYS if imports_only else VARIANTS
    for name, code in ways.items():
        results[name] = run_way(code, model)
        print(name, "rc", results[name]["rc"], f"{results[name]['s']}s", "last step", results[name]["last_step"],
              results[name]["out"], flush=True)
    if not imports_only:
        crashed = [n for n in ("arrow-after", "arrow-first", "bare+torch") if results[n]["rc"] not in (0, "timeout")]
        results["backtraces"] = {n: backtrace(STEP + VARIANTS[n], model) for n in crashed}
        results["shared_symbols"] = shared_symbols()
        results["cross_bindings"] = cross_bindings(STEP + VARIANTS["arrow-after"], model)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--imports"]
    main(args[0], imports_only="--imports" in sys.argv[1:])
