"""MLC artifacts: `mlc_llm convert_weight`, `gen_config` and `compile` for the host's device.

`quant` is an MLC quantization: q4f16_1 (group quantization) or q4f16_awq (needs settings['awq_source'],
AWQ weights made beforehand). settings: conv_template (default chatml), device (auto; metal on macOS).
The artifact is a folder: weights, mlc-chat-config.json, tokenizer files and lib.<so|dylib>.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from localbench.artifacts.integrity import dir_size
from localbench.builds.mlc import import_mlc

QUANTS = ("q4f16_1", "q4f16_awq")


def mlc_llm_cli(args: list[str]) -> None:
    done = subprocess.mlc_llm_cli([sys.executable, "-m", "mlc_llm", *args], capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"mlc_llm {args[0]} failed: {tail[0]}")


def convert(hf_dir: Path, out_path: Path, model: str, quant: str, settings: dict) -> dict:
    """Convert, configure and compile one MLC artifact into the folder `out_path`; one artifact row."""
    mlc_llm = import_mlc()
    if quant not in QUANTS:
        raise ValueError(f"unsupported MLC quant {quant!r}: use one of {', '.join(QUANTS)}")
    device = settings.get("device", "auto")
    if device == "auto" and sys.platform == "darwin":
        device = "metal"
    out = Path(out_path)
    shutil.rmtree(out, ignore_errors=True)
    source = []
    if quant == "q4f16_awq":
        if not settings.get("awq_source"):
            raise ValueError("q4f16_awq needs convert.mlc.awq_source: AWQ weights made with llm-awq/AutoAWQ")
        source = ["--source", str(settings["awq_source"]), "--source-format", "awq"]
    t0 = time.perf_counter()
    mlc_llm_cli(["convert_weight", str(hf_dir), "--quantization", quant, *source, "-o", str(out)])
    mlc_llm_cli(["gen_config", str(hf_dir), "--quantization", quant,
         "--conv-template", str(settings.get("conv_template", "chatml")), "-o", str(out)])
    lib = out / ("lib.dylib" if sys.platform == "darwin" else "lib.so")
    mlc_llm_cli(["compile", str(out / "mlc-chat-config.json"), "--device", str(device), "-o", str(lib)])
    convert_s = time.perf_counter() - t0
    return {"model": model, "format": "mlc", "quant": quant, "path": str(out), "tokenizer_path": str(hf_dir),
            "size_bytes": dir_size(out), "bits_per_weight": None,
            "convert_s": convert_s, "tool": f"mlc_llm {getattr(mlc_llm, '__version__', 'unknown')}",
            "status": "ok", "error": None}
