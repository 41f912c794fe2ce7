"""HF safetensors folders for the PyTorch runtime, one per dtype (fp32 / bf16 / fp16)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from localbench.artifacts.integrity import dir_size
from localbench.core.hardware import FLOAT_DTYPES


def convert(hf_dir: Path, out_path: Path, model: str, quant: str, settings: dict) -> dict:
    """Re-save the downloaded folder at `quant`'s dtype (with transformers) into out_path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quant not in FLOAT_DTYPES:
        raise ValueError(f"convert.hf.quants: {quant!r} is not one of {sorted(FLOAT_DTYPES)}")
    t0 = time.perf_counter()
    shutil.rmtree(out_path, ignore_errors=True)
    weights = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, FLOAT_DTYPES[quant]))
    weights.save_pretrained(out_path)
    AutoTokenizer.from_pretrained(hf_dir).save_pretrained(out_path)
    n_params = sum(p.numel() for p in weights.parameters())
    size = sum(p.stat().st_size for p in Path(out_path).glob("*.safetensors"))
    return {"model": model, "format": "hf", "quant": quant, "path": str(out_path), "tokenizer_path": str(out_path),
            "size_bytes": dir_size(out_path), "bits_per_weight": 8 * size / n_params,
            "convert_s": time.perf_counter() - t0, "tool": "transformers save_pretrained", "status": "ok",
            "error": None}
