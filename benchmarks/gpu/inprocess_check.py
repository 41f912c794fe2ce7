"""Why llama.cpp in-process crashed on the lent GPU: one load + one short request in fresh processes, four ways.

Run by benchmarks/gpu_run.py from the code folder (params.yaml = the gpu profile's) once llama.cpp is built and the
F16 GGUF converted:   python benchmarks/gpu/inprocess_check.py OUT.json

  bare            llama_cpp.Llama on the F16 GGUF, nothing else imported
  bare+torch      the same after torch made a CUDA context (torch's own CUDA libraries loaded first)
  runtime         the project's runtime (engine.llamacpp settings of the profile: n_ctx, flash attention, YaRN)
  runtime+torch   the same after torch made a CUDA context

Each: exit code (a negative one is the signal), seconds, the CUDA libraries the process had mapped (/proc/self/maps),
whether torch was imported, and the stderr tail (faulthandler's traceback on a crash).
"""
import json
import subprocess
import sys
import time

TORCH = "import torch; torch.zeros(1, device='cuda'); "
MAPS = ("import sys; libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if any(k in l for k in "
        "('cublas', 'cudart', 'ggml', 'llama', 'libcuda.'))}); print('MAPS', libs); print('TORCH', 'torch' in "
        "sys.modules)")
BARE = ("import llama_cpp; from localbench.artifacts import catalog; "
        "a = next(a for a in catalog.artifacts(('gguf',), __import__('localbench.config.params', fromlist=['x'])"
        ".params('convert')['convert'])[0] if a.quant == 'F16'); "
        "m = llama_cpp.Llama(model_path=a.path, n_gpu_layers=99, n_ctx=4096, verbose=True); "
        "print('OUT', m('def f(x):', max_tokens=8)['usage']); ")
RUNTIME = ("from localbench.artifacts import catalog; from localbench.config.params import engine_settings, params; "
           "from localbench.measure.session import load_runtime; from localbench.core.types import Request; "
           "cfg = params('model', 'runtime', 'engine', 'workload', 'convert', 'load'); "
           "rt = load_runtime('llamacpp', engine_settings('llamacpp', cfg)); "
           "a = next(a for a in catalog.artifacts(rt.formats, cfg['convert'])[0] if a.quant == 'F16'); "
           "s = rt.load(a, 'inprocess'); "
           "print('OUT', list(s.stream(Request('p', tuple(range(100, 1124)), '', 16)))[-1]); ")


def main(out: str) -> None:
    results = {}
    for name, code in (("bare", BARE), ("bare+torch", TORCH + BARE), ("runtime", RUNTIME),
                       ("runtime+torch", TORCH + RUNTIME)):
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code + MAPS], capture_output=True,
                               text=True, timeout=240)
            rc, stdout, stderr = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired as exc:
            rc, stdout, stderr = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
        lines = stdout.splitlines()
        results[name] = {"rc": rc, "s": round(time.time() - t0, 1),
                         "maps": next((l[5:] for l in lines if l.startswith("MAPS")), None),
                         "torch_imported": next((l[6:] for l in lines if l.startswith("TORCH")), None),
                         "out": next((l[4:] for l in lines if l.startswith("OUT")), None),
                         "stderr_tail": stderr[-3000:]}
        print(name, "rc", rc, f"{results[name]['s']}s", results[name]["out"], flush=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
