"""MLX artifacts with mlx_lm's Python convert API: bf16/fp16/fp32, 8..2-bit affine and mixed-bit recipes, and the
learned mixed precision of mlx_lm.quant.dynamic_quant on the pinned calibration text.

`quant` names: bf16 | fp16 | fp32 | <n>bit (n in 2,3,4,5,6,8) | mixed_2_6 | mixed_3_4 | mixed_3_6 | mixed_4_6 (rules
fixed by mlx_lm) | dynamic_<low>_<high> (`convert.mlx.learned_quants`: every quantizable layer's sensitivity to
<low>-bit quantization, a gradient of the KL divergence to the unquantized model over the calibration text; the
most sensitive layers get <high> bits until `learned.target_bpw` is reached).
The group size comes from settings['group_size'] (mlx_lm's default 64); settings['dtype'] (bfloat16 |
float16 | float32, null = the model's own) is the dtype of a quantized model's scales, biases and
unquantized layers: MLX's CPU backend runs float32-scaled quantized matmuls ~9x faster than bfloat16 ones.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from localbench.artifacts.integrity import dir_size
from localbench.core.hardware import FLOAT_DTYPES
from localbench.core.texts import build_text

BITS = {f"{b}bit": b for b in (2, 3, 4, 5, 6, 8)}
RECIPES = ("mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6")
QUANTS = (*FLOAT_DTYPES, *BITS, *RECIPES)
LEARNED = re.compile(r"dynamic_([2-8])_([2-8])$")


def learned_bits(quant: str) -> tuple[int, int]:
    """(low, high) bits of a learned quant name `dynamic_<low>_<high>`; ValueError otherwise."""
    m = LEARNED.match(quant)
    if not m or int(m[1]) not in BITS.values() or int(m[2]) not in BITS.values() or int(m[1]) >= int(m[2]):
        raise ValueError(f"unsupported MLX learned quant {quant!r}: use dynamic_<low>_<high> with low < high in "
                         f"{', '.join(map(str, BITS.values()))} (e.g. dynamic_4_6)")
    return int(m[1]), int(m[2])


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


def calibration_tokens(segments: list[dict], tokenizer, samples: int, length: int):
    """The calibration text (localbench.core.texts, pinned; `tokenizer`: the model's HF tokenizer) as `samples`
    rows of `length` token ids (mx.array), in text order, and the text's record."""
    import mlx.core as mx

    text = build_text(segments, tokenizer)
    ids = tokenizer.encode(text.text)
    rows = min(samples, len(ids) // length)
    if rows < 1:
        raise ValueError(f"the calibration text has {len(ids)} tokens: fewer than one row of "
                         f"convert.mlx.learned.sequence_length={length}")
    return mx.array(ids[:rows * length]).reshape(rows, length), text


def learn(hf_dir: Path, out_path: Path, quant: str, settings: dict) -> str:
    """mlx_lm.quant.dynamic_quant on the calibration text (settings['calibration_text']; nothing downloaded):
    sensitivities estimated on a float32 copy (MLX's CPU backend is fastest there), the threshold searched for
    `target_bpw`, the model quantized in its own dtype and saved; returns the recipe's description."""
    import mlx.core as mx
    from mlx_lm.quant.dynamic_quant import estimate_sensitivities, estimate_threshold
    from mlx_lm.utils import load, quantize_model, save
    from transformers import AutoTokenizer

    low, high = learned_bits(quant)
    learned, gs = settings.get("learned") or {}, int(settings.get("group_size", 64))
    target = float(learned.get("target_bpw", 5.0))
    floor = low + 2 * (32 if settings.get("dtype") == "float32" else 16) / gs     # the uniform low-bit file
    if target <= floor:
        raise ValueError(f"convert.mlx.learned.target_bpw={target} is at or below {floor:g}, the bits per weight of "
                         f"uniform {low}-bit with group {gs} and these scales: raise it (or lower the low bits)")
    model, tokenizer, config = load(str(hf_dir), return_config=True)
    data, text = calibration_tokens(settings["calibration_text"], AutoTokenizer.from_pretrained(hf_dir),
                                    int(learned.get("samples", 8)),
                                    int(learned.get("sequence_length", 512)))
    reference, _ = load(str(hf_dir))
    reference.set_dtype(mx.float32)
    sens = dict(estimate_sensitivities(reference, data, low, gs, high, gs,
                                       batch_size=int(learned.get("batch_size", 4))))
    del reference
    if settings.get("dtype"):
        model.set_dtype(getattr(mx, settings["dtype"]))
    threshold = estimate_threshold(model, sens, target, low, gs, high, gs)
    wide = sorted(p for p, v in sens.items() if v > threshold)

    def predicate(path: str, module) -> bool | dict:
        if not hasattr(module, "to_quantized"):
            return False
        return {"bits": high, "group_size": gs} if path in wide else True

    model, config = quantize_model(model, config, group_size=gs, bits=low, quant_predicate=predicate)
    save(str(out_path), str(hf_dir), model, tokenizer, config)
    return (f"mlx_lm.quant.dynamic_quant: {low}/{high}-bit, group {gs}, target {target} bpw; sensitivities over "
            f"{data.shape[0]} x {data.shape[1]} tokens of the calibration text {text.sha256[:12]}; "
            f"{len(wide)} of {len(sens)} layers at {high} bits"
            + (f" (dtype {settings['dtype']})" if settings.get("dtype") else ""))


def convert(hf_dir: Path, out_path: Path, model: str, quant: str, settings: dict) -> dict:
    """Convert an HF folder to an MLX folder at `out_path`; return its artifact row."""
    learned = bool(LEARNED.match(quant))
    kwargs = {} if learned else convert_kwargs(quant, int(settings.get("group_size", 64)), settings.get("dtype"))
    import mlx_lm
    from mlx_lm import convert as mlx_convert

    out_path = Path(out_path)
    if out_path.exists():
        shutil.rmtree(out_path)    # a DVC out: mlx_lm refuses to write into an existing folder
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if learned:
        tool = f"mlx_lm {mlx_lm.__version__} " + learn(Path(hf_dir), out_path, quant, settings)
    else:
        mlx_convert(str(hf_dir), str(out_path), **kwargs)
        tool = f"mlx_lm.convert {mlx_lm.__version__}" + (f" (dtype {kwargs['dtype']})" if "dtype" in kwargs else "")
    lift_rope_theta(out_path)
    convert_s = time.perf_counter() - t0
    return {
        "model": model, "format": "mlx", "quant": quant, "path": str(out_path),
        "tokenizer_path": str(out_path), "size_bytes": dir_size(out_path),
        "bits_per_weight": bits_per_weight(out_path), "convert_s": convert_s,
        "tool": tool, "status": "ok", "error": "",
    }
