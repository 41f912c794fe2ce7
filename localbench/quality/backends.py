"""The forward passes that score an artifact, one per format's runtime.

HF folders: transformers (`hf_forward`). MLX: mlx_lm's own forward (`mlx_forward`) or, on MLX's CPU
backend, the artifact's dequantized weights in the source model's transformers architecture
(`mlx_in_torch_forward`, checked against mlx_lm's forward on a prefix by `native_check`). GGUF:
llama.cpp's `llama-perplexity` (`--kl-divergence-base FILE [--kl-divergence]`), whose printed statistics
`parse_kld` / `parse_final_ppl` read, and llama.cpp's own tokenization (`llamacpp_ids`) for the ids check.
The runtime libraries are imported inside the functions that use them: each is optional.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np

from localbench.builds import llamacpp as llamacpp_build
from localbench.core.hardware import FLOAT_DTYPES, torch_device
from localbench.quality.logits import logsumexp

# ------------------------------------------------------------------------------------------ transformers

def hf_forward(path: str, quant: str, n_ctx: int, threads: int | None,
               weights: dict[str, np.ndarray] | None = None) -> tuple[Callable, str]:
    """transformers: logits of the scored positions of one window (fp32 numpy); `weights` (HF names) replace
    the checkpoint's (every one must be used, and only the tied lm_head may be left out)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if quant not in FLOAT_DTYPES:
        raise ValueError(f"HF quant {quant!r} is not one of {sorted(FLOAT_DTYPES)}")
    if threads:
        torch.set_num_threads(int(threads))
    device = torch_device("auto")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, FLOAT_DTYPES[quant]))
    if weights is not None:
        missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()},
                                                    strict=False)
        tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
        if unexpected or set(missing) - tied:
            raise ValueError(f"MLX weights do not map onto {path}: missing {sorted(set(missing) - tied)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
    model = model.to(device).eval()
    keep = n_ctx - n_ctx // 2           # logits of positions n_ctx/2 .. n_ctx-1 (the last is not scored)

    def forward(window: list[int], every: bool = False) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.tensor([window], device=device), logits_to_keep=0 if every else keep, use_cache=False)
        return out.logits[0].float().cpu().numpy() if every else out.logits[0, :-1].float().cpu().numpy()

    return forward, f"torch {torch.__version__} / transformers {transformers.__version__} ({device})"


# ------------------------------------------------------------------------------------------------ MLX

def mlx_native(path: str) -> tuple[Callable, str]:
    """mlx_lm's own forward: logits [T, V] (fp32 numpy) of a token list, computed at the artifact's dtypes."""
    import mlx.core as mx
    import mlx_lm
    from mlx_lm import load

    model, _ = load(path)

    def logits(ids: list[int]) -> np.ndarray:
        out = model(mx.array(ids)[None])[0].astype(mx.float32)
        mx.eval(out)
        return np.array(out)

    return logits, f"mlx_lm {mlx_lm.__version__} (mlx {mx.__version__}, {mx.default_device()})"


def mlx_forward(path: str, n_ctx: int) -> tuple[Callable, str]:
    """mlx_lm: the model's own forward over one window; logits of the scored positions (fp32 numpy)."""
    native, version = mlx_native(path)
    first = n_ctx // 2
    return (lambda window: native(window)[first:n_ctx - 1]), version


def mlx_weights(path: str) -> dict[str, np.ndarray]:
    """The MLX artifact's weights as mlx_lm holds them, quantized layers dequantized (exact), as fp32 arrays
    named like the HF checkpoint's parameters."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import dequantize_model, load_model

    model, _ = load_model(Path(path))
    model = dequantize_model(model)
    return {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.parameters())}


def mlx_in_torch_forward(path: str, source_dir: Path, n_ctx: int, threads: int | None) -> tuple[Callable, str]:
    """The MLX artifact's (dequantized) weights in the source model's transformers architecture, fp32 compute:
    the quantization grid MLX serves, evaluated at GEMM speed (MLX's CPU backend runs ~3 GFLOPS here)."""
    forward, version = hf_forward(str(source_dir), "fp32", n_ctx, threads, weights=mlx_weights(path))
    return forward, f"{version}, weights of the MLX artifact (dequantized to fp32)"


def mlx_path(mlx_cfg: dict) -> str:
    """How MLX artifacts are evaluated: `mlx` (mlx_lm's forward on the whole text) or `torch` (their weights in
    transformers, mlx_lm's own forward checked on a prefix); `auto`: mlx on a GPU, torch on MLX's CPU backend."""
    choice = mlx_cfg.get("forward", "auto")
    if choice != "auto":
        return choice
    import mlx.core as mx
    return "mlx" if mx.default_device().type == mx.DeviceType.gpu else "torch"


def native_check(path: str, forward: Callable, window: list[int], n_ctx: int, tokens: int) -> dict:
    """mlx_lm's own forward vs the transformers path on the first `tokens` positions of a window: mean KL and
    top-1 agreement of the next-token distributions (same weights, MLX's kernels and dtypes vs fp32)."""
    native, _ = mlx_native(path)
    got = native(window[:tokens])
    full = forward(window[:tokens], every=True)
    ref = full[:tokens] - logsumexp(full[:tokens])[:, None]
    logp = got - logsumexp(got)[:, None]
    kld = (np.exp(ref) * (ref - logp)).sum(axis=1)
    return {"native_tokens": tokens, "native_kld": float(kld.mean()),
            "native_top1": float((got.argmax(axis=1) == full[:tokens].argmax(axis=1)).mean())}


# ------------------------------------------------------------------------------------------ llama.cpp

PATTERNS = {
    "ppl": r"Mean PPL\(Q\)\s*:\s*([-\d.]+)",
    "ppl_base": r"Mean PPL\(base\)\s*:\s*([-\d.]+)",
    "kld_mean": r"Mean\s+KLD:\s*([-\d.e+]+)",
    "kld_max": r"Maximum KLD:\s*([-\d.e+]+)",
    "kld_p99": r"99\.0%\s+KLD:\s*([-\d.e+]+)",
    "top1": r"Same top p:\s*([-\d.]+)",
}


def parse_kld(output: str) -> dict:
    """The statistics llama-perplexity --kl-divergence prints (top1 as a fraction)."""
    found = {}
    for key, pattern in PATTERNS.items():
        m = re.search(pattern, output)
        if m is None:
            raise RuntimeError(f"llama-perplexity printed no {key!r}:\n" + "\n".join(output.splitlines()[-15:]))
        found[key] = float(m.group(1))
    found["top1"] /= 100
    return found


def parse_final_ppl(output: str) -> float:
    m = re.search(r"Final estimate: PPL = ([\d.]+)", output)
    if m is None:
        raise RuntimeError("llama-perplexity printed no final PPL:\n" + "\n".join(output.splitlines()[-15:]))
    return float(m.group(1))


def llama_perplexity(model: str, text_file: Path, base: Path, n_ctx: int, windows: int, threads: int | None,
                     write_base: bool) -> str:
    """Run llama-perplexity: write the base file (`write_base`) or score against it; returns its output."""
    argv = [str(llamacpp_build.tool("llama-perplexity")), "-m", model, "-f", str(text_file), "-c", str(n_ctx),
            "--chunks", str(windows), "-b", str(n_ctx * min(windows, 4)), "--kl-divergence-base", str(base)]
    argv += ["-t", str(threads)] if threads else []
    argv += [] if write_base else ["--kl-divergence"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"llama-perplexity failed (exit {proc.returncode}):\n" + "\n".join(out.splitlines()[-12:]))
    return out


def gguf_vocab(path: str) -> tuple[bool, int, int | None]:
    """(adds BOS, vocabulary size, BOS id) from a GGUF's metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(name):
        f = reader.fields.get(name)
        return None if f is None else f.parts[f.data[0]].tolist()

    add_bos = field("tokenizer.ggml.add_bos_token")
    bos = field("tokenizer.ggml.bos_token_id")
    tokens = reader.fields["tokenizer.ggml.tokens"]
    return bool(add_bos and add_bos[0]), len(tokens.data), (int(bos[0]) if bos else None)


def llamacpp_ids(path: str, text: str, add_bos: bool) -> list[int]:
    """llama.cpp's own tokenization of the text (vocabulary only), as llama-perplexity does it."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    try:
        return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False))
    finally:
        llm.close()


def llamacpp_version() -> str:
    return f"llama.cpp (llama-cpp-python {llamacpp_build.VERSION}) llama-perplexity"
