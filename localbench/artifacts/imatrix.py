"""The importance matrix of a model (DVC stage `imatrix`, models/imatrix/): llama-imatrix run on the F16 GGUF over
the pinned calibration text, read by every `<type>-imat` GGUF recipe (localbench.artifacts.converters.gguf).

The calibration text (`convert.calibration_text`, shared with MLX's learned quants) is built like the quality text (localbench.core.texts: files
of the running Python, each pinned by sha256, nothing downloaded) and shares no source with it (checked in
localbench.config.schema). It is cut into `chunks` chunks of `n_ctx` tokens by llama-imatrix itself.
models/imatrix/ holds imatrix.gguf, the exact text (calibration.txt) and imatrix.json: the text's and the
matrix's sha256, its sources, the chunks used, the time and the tool; `status` is skipped when no recipe needs it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from localbench.artifacts.sources import sha256_of
from localbench.builds import llamacpp as llamacpp_build
from localbench.core.texts import build_text

FILE, TEXT, MANIFEST = "imatrix.gguf", "calibration.txt", "imatrix.json"
CHUNKS_LINE = re.compile(r"computing over (\d+) chunks")


def compute_matrix(f16: Path, source_dir: Path, out_dir: Path, segments: list[dict], cfg: dict,
                   threads: int | None = None) -> dict:
    """llama-imatrix on `f16` over the calibration text (tokenized for its quotas by source_dir's tokenizer);
    writes out_dir/{imatrix.gguf, calibration.txt} and returns the manifest."""
    from transformers import AutoTokenizer

    text = build_text(segments, AutoTokenizer.from_pretrained(source_dir))
    (out_dir / TEXT).write_text(text.text, encoding="utf-8")
    argv = [str(llamacpp_build.tool("llama-imatrix")), "-m", str(f16), "-f", str(out_dir / TEXT),
            "-o", str(out_dir / FILE), "-c", str(cfg["n_ctx"]), "--chunks", str(cfg["chunks"]),
            "-t", str(threads or os.cpu_count() or 1), "--no-ppl"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"llama-imatrix failed (exit {proc.returncode}):\n{llamacpp_build.output_tail(log, 12)}")
    used = CHUNKS_LINE.search(log)
    return {"status": "ok", "error": "", "text_sha256": text.sha256, "text_pinned": text.pinned,
            "sources": text.sources, "n_ctx": cfg["n_ctx"], "chunks": cfg["chunks"],
            "chunks_used": int(used.group(1)) if used else None, "imatrix_sha256": sha256_of(out_dir / FILE),
            "compute_s": time.perf_counter() - t0,
            "tool": f"llama-imatrix -c {cfg['n_ctx']} (llama-cpp-python {llamacpp_build.VERSION})"}


def write_manifest(manifest: dict, out_dir: Path) -> None:
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))


def imatrix_file(out_dir: Path) -> tuple[Path, dict]:
    """The importance matrix and its manifest; RuntimeError with the stage's reason when there is none."""
    manifest = json.loads((out_dir / MANIFEST).read_text()) if (out_dir / MANIFEST).exists() else {}
    if manifest.get("status") != "ok":
        raise RuntimeError(f"no importance matrix in {out_dir}: {manifest.get('error') or 'run dvc repro imatrix'}")
    return out_dir / FILE, manifest


def describe(manifest: dict) -> str:
    """One line naming an importance matrix and the text it was computed on (the artifact rows' `tool`)."""
    return (f"imatrix {manifest['imatrix_sha256'][:12]} from {manifest['chunks_used']} chunks of {manifest['n_ctx']} "
            f"tokens of calibration text {manifest['text_sha256'][:12]}")
