"""Print llama.cpp's prefill and decode tok/s with flash attention on and off, per prompt length (llama-bench):
`python benchmarks/flash_attention_bench.py models/gguf/Q4_K_M/model.gguf --lengths 512 2048 8192`.

llama.cpp's `-fa auto` turns flash attention on for the CPU backend; on several CPUs its tiled kernel prefills
slower than the plain path, more so as the context grows (ggml-org/llama.cpp#27086, #26559), while decode gains.
The `long` profile's curves depend on it: this measures which way it goes on this machine. Decode (`-n`) runs at
the depth of the prompt (`-d`), as the pipeline's requests decode after their prompt.
"""
import argparse
import json
import os
import subprocess

from localbench.builds import llamacpp as llamacpp_build


def bench(model: str, fa: bool, prompt: int, n_gen: int, threads: int, reps: int) -> dict:
    """llama-bench's prefill of `prompt` tokens and decode of `n_gen` after them, one setting of -fa."""
    out = {}
    for kind, shape in (("prefill", ["-p", str(prompt), "-n", "0"]), ("decode", ["-p", "0", "-n", str(n_gen), "-d", str(prompt)])):
        argv = [str(llamacpp_build.tool("llama-bench")), "-m", model, "-t", str(threads), "-r", str(reps),
                "-fa", "1" if fa else "0", "-b", "2048", "-ub", "512", "-o", "json", *shape]
        (test,) = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        out[kind] = float(test["avg_ts"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    ap.add_argument("--n-gen", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    print(f"{'tokens':>7} {'prefill fa on':>14} {'fa off':>8} {'off/on':>7} {'decode fa on':>13} {'fa off':>8} {'off/on':>7}")
    for n in a.lengths:
        on, off = (bench(a.model, fa, n, a.n_gen, a.threads, a.reps) for fa in (True, False))
        print(f"{n:>7} {on['prefill']:>14.1f} {off['prefill']:>8.1f} {off['prefill'] / on['prefill']:>7.2f} "
              f"{on['decode']:>13.2f} {off['decode']:>8.2f} {off['decode'] / on['decode']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
