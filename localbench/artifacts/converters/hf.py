"""HF safetensors folders for the PyTorch runtime: one per float dtype (fp32 / bf16 / fp16), or weight-only int8 /
int4 through torchao (transformers' TorchAoConfig: the linear layers' weights quantized, everything else at
convert.hf.base; the folder's config.json records the recipe and transformers restores it on load)."""
from __future__ import annotations

import importlib.metadata
import shutil
import time
from pathlib import Path

from localbench.artifacts.integrity import dir_size
from localbench.core.hardware import FLOAT_DTYPES, TORCHAO_QUANTS
from localbench.core.types import RuntimeUnavailable


def torchao_config(quant: str, dtype):
    """transformers' TorchAoConfig for a TORCHAO_QUANTS name (int4: group size 128, torchao's default), once the
    recipe has quantized one small linear layer at `dtype` here (a kernel package it lacks: RuntimeUnavailable with
    torchao's reason)."""
    import torch
    import torchao.quantization as tq
    from transformers import TorchAoConfig

    recipe = getattr(tq, TORCHAO_QUANTS[quant])
    config = recipe(group_size=128) if quant == "int4" else recipe()
    try:
        tq.quantize_(torch.nn.Sequential(torch.nn.Linear(256, 256)).to(dtype), config)
    except ImportError as exc:
        raise RuntimeUnavailable(f"torchao {importlib.metadata.version('torchao')} {recipe.__name__} at {dtype}: "
                                 f"{exc}") from None
    return TorchAoConfig(config)


def convert(hf_dir: Path, out_path: Path, model: str, quant: str, settings: dict) -> dict:
    """Re-save the downloaded folder at `quant`'s dtype, or quantized by torchao (with transformers), into
    out_path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quant not in FLOAT_DTYPES and quant not in TORCHAO_QUANTS:
        raise ValueError(f"convert.hf.quants: {quant!r} is not one of {sorted(FLOAT_DTYPES) + sorted(TORCHAO_QUANTS)}")
    t0 = time.perf_counter()
    shutil.rmtree(out_path, ignore_errors=True)
    base = FLOAT_DTYPES[quant if quant in FLOAT_DTYPES else settings.get("base") or "fp32"]
    dtype = getattr(torch, base)
    extra = {"quantization_config": torchao_config(quant, dtype)} if quant in TORCHAO_QUANTS else {}
    weights = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype, **extra)
    weights.save_pretrained(out_path)
    AutoTokenizer.from_pretrained(hf_dir).save_pretrained(out_path)
    n_params = sum(p.numel() for p in weights.parameters())
    size = sum(p.stat().st_size for p in Path(out_path).glob("*.safetensors"))
    return {"model": model, "format": "hf", "quant": quant, "path": str(out_path), "tokenizer_path": str(out_path),
            "size_bytes": dir_size(out_path), "bits_per_weight": 8 * size / n_params,
            "convert_s": time.perf_counter() - t0, "status": "ok",
            "tool": (f"torchao {importlib.metadata.version('torchao')} {TORCHAO_QUANTS[quant]} (weights of linear layers; rest {base})"
                     if quant in TORCHAO_QUANTS else "transformers save_pretrained"),
            "error": None}

