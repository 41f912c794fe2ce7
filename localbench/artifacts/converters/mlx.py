"""MLX artifacts with mlx_lm's Python convert API: bf16/fp16/fp32, 8..2-bit affine and mixed-bit recipes.

`quant` names: bf16 | fp16 | fp32 | <n>bit (n in 2,3,4,5,6,8) | mixed_2_6 | mixed_3_4 | mixed_3_6 | mixed_4_6.
The group size comes from settings['group_size'] (mlx_lm's default 64); settings['dtype'] (bfloat16 |
float16 | float32, null = the model's own) is the dtype of a quantized model's scales, biases and
unquantized layers: MLX's CPU backend runs float32-scaled quantized matmuls ~9x faster than bfloat16 ones.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from localbench.artifacts.integrity import dir_size
from localbench.core.hardware import FLOAT_DTYPES

BITS = {f"{b}bit": b for b in (2, 3, 4, 5, 6, 8)}
RECIPES = ("mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6")
QUANTS = (*FLOAT_DTYPES, *BITS, *RECIPES)


def convert_kwargs(quant: str, group_size: int, dtype: str | None = None) -> dict:
    """mlx_lm.convert keyword arguments for one quant name; ValueError naming the valid ones otherwise."""
    if dtype not in (None, *FLOAT_DTYPES.values()):
        raise ValueError(f"unsupported convert.mlx.dtype {dtype!r}: use null or one of {', '.join(FLOAT_DTYPES.values())}")
    if quant in FLOAT_DTYPES:
        return {"dtype": FLOAT_DTYPES[quant]}
    scale_dtype = {"dtype": dtype} if dtype else {}
    if quant in BITS:
        return {"quantize": True, "q_bits": BITS[quant], "q_group_size": group_size, **scale_dtype}
    if quant in RECIPES:
        return {"quantize": True, "quant_predicate": quant, "q_group_size": group_size, **scale_dtype}
    raise ValueError(f"unsupported MLX quant {quant!r}: use one of {', '.join(QUANTS)}")


def bits_per_weight(mlx_dir: Path) -> float:
    """Stored bits per parameter of a converted model (mlx_lm's own measure, weights loaded lazily)."""
    from mlx_lm.utils import compute_bits_per_weight, load_model

    model, _ = load_model(Path(mlx_dir), lazy=True)
    return float(compute_bits_per_weight(model))


def lift_rope_theta(mlx_dir: Path) -> None:
    """transformers 5 writes rope_theta inside rope_parameters; mlx_lm 0.32's llama reads only the top level
    (defaulting to 10000, wrong for e.g. SmolLM2's 100000): copy it up where the top level lacks it."""
    path = Path(mlx_dir) / "config.json"
    config = json.loads(path.read_text())
    theta = (config.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in config:
        path.write_text(json.dumps({**config, "rope_theta": theta}, indent=2))


def convert(hf_dir: Path, out_path: Path, model: str, quant: str, settings: dict) -> dict:
    """Convert an HF folder to an MLX folder at `out_path`; return its artifact row."""
    kwargs = convert_kwargs(quant, int(settings.get("group_size", 64)), settings.get("dtype"))
    import mlx_lm
    from mlx_lm import convert as mlx_convert

    out_path = Path(out_path)
    if out_path.exists():
        shutil.rmtree(out_path)    # a DVC out: mlx_lm refuses to write into an existing folder
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mlx_convert(str(hf_dir), str(out_path), **kwargs)
    lift_rope_theta(out_path)
    convert_s = time.perf_counter() - t0
    return {
        "model": model, "format": "mlx", "quant": quant, "path": str(out_path),
        "tokenizer_path": str(out_path), "size_bytes": dir_size(out_path),
        "bits_per_weight": bits_per_weight(out_path), "convert_s": convert_s,
        "tool": f"mlx_lm.convert {mlx_lm.__version__}" + (f" (dtype {kwargs['dtype']})" if "dtype" in kwargs else ""), "status": "ok", "error": "",
    }
