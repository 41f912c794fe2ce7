"""MLX artifacts with mlx_lm's Python convert API: bf16/fp16/fp32, 8..2-bit affine and mixed-bit recipes, and
mlx_lm's learned quants (mlx_lm.quant: dynamic_quant, AWQ, GPTQ, DWQ) on the pinned calibration text.

`quant` names: bf16 | fp16 | fp32 | <n>bit (n in 2,3,4,5,6,8) | mixed_2_6 | mixed_3_4 | mixed_3_6 | mixed_4_6 (rules
fixed by mlx_lm), and the learned ones (`convert.mlx.learned_quants`, settings under `learned`):
- dynamic_<low>_<high>: every quantizable layer's sensitivity to <low>-bit quantization (a gradient of the KL
  divergence to the unquantized model over the calibration text); the most sensitive layers get <high> bits until
  `target_bpw` is reached;
- awq_<n>: activation-aware scaling and clipping searched block by block (`n_grid` points), <n>-bit layers,
  embeddings and head 4-bit in groups of 32 (mlx_lm's defaults);
- gptq_<n> (n in 2,4,8): each layer's weights rounded column by column against the inverse Hessian of its inputs,
  the layers GPTQ does not cover (embeddings) at 6 bits (mlx_lm's default);
- dwq_<n>: uniform <n>-bit whose scales and biases are distilled (Adam, `learning_rate`, one pass) toward the
  unquantized model's logits; a quarter of the rows (at least one batch) is its validation set.
The group size comes from settings['group_size'] (mlx_lm's default 64); settings['dtype'] (bfloat16 |
float16 | float32, null = the model's own) is the dtype of a quantized model's scales, biases and
unquantized layers: MLX's CPU backend runs float32-scaled quantized matmuls ~9x faster than bfloat16 ones.
Learned recipes run in float32 and are saved in that dtype.
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
LEARNED = re.compile(r"(?:(dynamic)_(\d)_(\d)|(awq|gptq|dwq)_(\d))$")
LEARNED_BITS = {"dynamic": (2, 3, 4, 5, 6, 8), "awq": (2, 3, 4, 5, 6, 8), "gptq": (2, 4, 8), "dwq": (2, 3, 4, 5, 6)}


def learned_recipe(quant: str) -> tuple[str, int, int | None]:
    """(method, bits, high bits or None) of a learned quant name (dynamic_<low>_<high>, awq_<n>, gptq_<n>,
    dwq_<n>); ValueError naming the valid forms otherwise."""
    m = LEARNED.match(quant)
    method, bits, high = (m[1], int(m[2]), int(m[3])) if m and m[1] else (m[4], int(m[5]), None) if m else (None,) * 3
    if method and bits in LEARNED_BITS[method] and (high is None or (high in LEARNED_BITS[method] and bits < high)):
        return method, bits, high
    raise ValueError(f"unsupported MLX learned quant {quant!r}: use dynamic_<low>_<high> (low < high, bits in "
                     f"{', '.join(map(str, LEARNED_BITS['dynamic']))}), awq_<n>, gptq_<n> (n in 2, 4, 8) or dwq_<n> "
                     f"(n up to 6), e.g. dynamic_4_6, awq_4")


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


def own_dtype(model):
    """The dtype of a loaded model's floating-point parameters (its own precision)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    return next(v.dtype for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating))


def learn_dynamic(model, config, data, bits, high, gs, dtype, learned):
    """mlx_lm.quant.dynamic_quant: sensitivities on the float32 model, threshold and quantization in `dtype`."""
    from mlx_lm.quant.dynamic_quant import estimate_sensitivities, estimate_threshold
    from mlx_lm.utils import quantize_model

    target = float(learned.get("target_bpw", 5.0))
    floor = bits + 2 * 8 * dtype.size / gs               # the uniform low-bit file
    if target <= floor:
        raise ValueError(f"convert.mlx.learned.target_bpw={target} is at or below {floor:g}, the bits per weight of "
                         f"uniform {bits}-bit with group {gs} and {dtype} scales: raise it (or lower the low bits)")
    sens = dict(estimate_sensitivities(model, data, bits, gs, high, gs, batch_size=int(learned.get("batch_size", 4))))
    model.set_dtype(dtype)
    threshold = estimate_threshold(model, sens, target, bits, gs, high, gs)
    wide = sorted(p for p, v in sens.items() if v > threshold)

    def predicate(path: str, module) -> bool | dict:
        if not hasattr(module, "to_quantized"):
            return False
        return {"bits": high, "group_size": gs} if path in wide else True

    model, config = quantize_model(model, config, group_size=gs, bits=bits, quant_predicate=predicate)
    return model, config, (f"dynamic_quant: {bits}/{high}-bit, group {gs}, target {target} bpw; "
                           f"{len(wide)} of {len(sens)} layers at {high} bits")


def learn_awq(model, config, data, bits, high, gs, dtype, learned):
    """mlx_lm.quant.awq on the float32 model (its per-architecture scaling rules)."""
    from mlx_lm.quant.awq import AWQ_MODEL_CONFIGS, awq_quantize, update_config

    rules = AWQ_MODEL_CONFIGS.get(config.get("model_type"))
    if rules is None:
        raise ValueError(f"mlx_lm's AWQ has no rules for {config.get('model_type')!r} models (it has "
                         f"{', '.join(sorted(AWQ_MODEL_CONFIGS))}): use a dynamic_, gptq_ or dwq_ quant for this model")
    n_grid = int(learned.get("n_grid", 20))
    awq_quantize(model, data, rules, group_size=gs, bits=bits, n_grid=n_grid)
    return model, update_config(model, config), (f"awq: {bits}-bit, group {gs}, grid {n_grid}; embeddings and "
                                                 f"head 4-bit, group 32")


def learn_gptq(model, config, data, bits, high, gs, dtype, learned):
    """mlx_lm.quant.gptq on the float32 model; the layers it does not cover at 6 bits."""
    from mlx_lm.quant.gptq import gptq_quantize

    model, config["quantization"] = gptq_quantize(model, data, bits, gs, 6, gs,
                                                  batch_size=int(learned.get("batch_size", 4)))
    return model, config, f"gptq: {bits}-bit, group {gs}; embeddings 6-bit"


def learn_dwq(model, config, data, bits, high, gs, dtype, learned):
    """mlx_lm.quant.dwq: a uniform <bits>-bit copy whose scales and biases are distilled toward the float32 model."""
    import copy

    import mlx.core as mx
    import mlx.optimizers as optimizers
    from mlx_lm.quant.dwq import dwq_quantize
    from mlx_lm.utils import quantize_model

    batch = int(learned.get("batch_size", 4))
    rows = [(r, 0) for r in data.tolist()]
    held = max(batch, len(rows) // 4)
    if len(rows) - held < batch:
        raise ValueError(f"DWQ needs {batch + held} rows of calibration text (a batch to train on, {held} to "
                         f"validate on): raise convert.mlx.learned.samples (now {len(rows)}) or lower batch_size")
    student, config = quantize_model(copy.deepcopy(model), config, group_size=gs, bits=bits)
    lr = float(learned.get("learning_rate", 1e-6))
    dwq_quantize(student, lambda tokens, _i, split: model(tokens), optimizers.Adam(learning_rate=lr, bias_correction=True),
                 rows[:-held], rows[-held:], batch, data.shape[1] + 1, seed=0, dtype=mx.float32)
    return student, config, (f"dwq: {bits}-bit, group {gs}; scales and biases distilled over {len(rows) - held} "
                             f"rows (Adam, learning rate {lr:g}), validated on {held}")


LEARN = {"dynamic": learn_dynamic, "awq": learn_awq, "gptq": learn_gptq, "dwq": learn_dwq}


def learn(hf_dir: Path, out_path: Path, quant: str, settings: dict) -> str:
    """One of mlx_lm's learned quants on the calibration text (settings['calibration_text']; nothing downloaded):
    the model loaded once, calibrated in float32, saved with settings['dtype'] (or its own) scales; returns the
    recipe's description."""
    import mlx.core as mx
    from mlx_lm.utils import load, save
    from transformers import AutoTokenizer

    method, bits, high = learned_recipe(quant)
    learned, gs = settings.get("learned") or {}, int(settings.get("group_size", 64))
    model, tokenizer, config = load(str(hf_dir), return_config=True)
    dtype = getattr(mx, settings["dtype"]) if settings.get("dtype") else own_dtype(model)
    data, text = calibration_tokens(settings["calibration_text"], AutoTokenizer.from_pretrained(hf_dir),
                                    int(learned.get("samples", 8)), int(learned.get("sequence_length", 512)))
    mx.random.seed(0)
    model.set_dtype(mx.float32)
    model, config, recipe = LEARN[method](model, config, data, bits, high, gs, dtype, learned)
    model.set_dtype(dtype)
    save(str(out_path), str(hf_dir), model, tokenizer, config)
    return (f"mlx_lm.quant.{recipe}; {data.shape[0]} x {data.shape[1]} tokens of the calibration text "
            f"{text.sha256[:12]}, calibrated in float32, saved with {str(dtype).rsplit('.', 1)[-1]} scales")


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
