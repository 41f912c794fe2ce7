"""The forward passes that score an artifact, one per format's runtime.

HF folders: transformers (`hf_forward`). MLX: mlx_lm's own forward (`mlx_forward`) or, on MLX's CPU
backend, the artifact's dequantized weights in the source model's transformers architecture
(`mlx_in_torch_forward`, checked against mlx_lm's forward on scored positions by `native_check`). GGUF:
llama.cpp's `llama-perplexity` (`--kl-divergence-base FILE [--kl-divergence]`), whose printed statistics
`parse_kld` / `parse_kld_windows` / `parse_ppl_windows` / `parse_final_ppl` read, and llama.cpp's own
tokenization (`llamacpp_ids`) for the ids check. Each forward carries its `label` (`Forward.label`,
`llamacpp_label`): whose forward pass produced a row's logits, the quality frame's `forward` column.
The runtime libraries are imported inside the functions that use them: each is optional.
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localbench.builds import llamacpp as llamacpp_build
from localbench.core.hardware import hf_dtype, torch_device
from localbench.core.stats import normal_ci
from localbench.quality.logits import logsumexp


@dataclass(frozen=True)
class Forward:
    """A forward pass: `logits(window)` gives the logits of the window's scored positions (fp32 numpy);
    `version` the libraries, `label` whose forward pass it is (the report's `forward` column)."""
    logits: Callable[[list[int]], np.ndarray]
    version: str
    label: str


# ------------------------------------------------------------------------------------------ transformers

def hf_forward(path: str, quant: str, n_ctx: int, threads: int | None,
               weights: dict[str, np.ndarray] | None = None) -> Forward:
    """transformers: logits of the scored positions of one window (fp32 numpy); `weights` (HF names) replace
    the checkpoint's (every one must be used, and only the tied lm_head may be left out)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    dtype = hf_dtype(quant, path)
    if threads:
        torch.set_num_threads(int(threads))
    device = torch_device("auto")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    if weights is not None:
        missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()},
                                                    strict=False)
        tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
        if unexpected or set(missing) - tied:
            raise ValueError(f"MLX weights do not map onto {path}: missing {sorted(set(missing) - tied)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
    model = model.to(device).eval()
    keep = n_ctx - n_ctx // 2           # logits of positions n_ctx/2 .. n_ctx-1 (the last is not scored)

    def logits(window: list[int]) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.tensor([window], device=device), logits_to_keep=keep, use_cache=False)
        return out.logits[0, :-1].float().cpu().numpy()

    return Forward(logits, f"torch {torch.__version__} / transformers {transformers.__version__} ({device})",
                   f"transformers {quant} ({device})")


# ------------------------------------------------------------------------------------------------ MLX

def mlx_native(path: str) -> Forward:
    """mlx_lm's own forward: logits [T, V] (fp32 numpy) of every position of a token list, computed at the
    artifact's dtypes."""
    import mlx.core as mx
    import mlx_lm
    from mlx_lm import load

    model, _ = load(path)

    def logits(ids: list[int]) -> np.ndarray:
        out = model(mx.array(ids)[None])[0].astype(mx.float32)
        mx.eval(out)
        return np.array(out)

    device = mx.default_device()
    gpu = device.type == mx.DeviceType.gpu
    backend = ("Metal" if sys.platform == "darwin" else "CUDA") if gpu else "CPU"
    return Forward(logits, f"mlx_lm {mlx_lm.__version__} (mlx {mx.__version__}, {device})",
                   f"mlx_lm (MLX {backend})")


def mlx_forward(path: str, n_ctx: int) -> Forward:
    """mlx_lm: the model's own forward over one window; logits of the scored positions (fp32 numpy)."""
    native = mlx_native(path)
    first = n_ctx // 2
    return Forward(lambda window: native.logits(window)[first:n_ctx - 1], native.version, native.label)


def mlx_weights(path: str) -> dict[str, np.ndarray]:
    """The MLX artifact's weights as mlx_lm holds them, quantized layers dequantized (exact), as fp32 arrays
    named like the HF checkpoint's parameters."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import dequantize_model, load_model

    model, _ = load_model(Path(path))
    model = dequantize_model(model)
    return {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.parameters())}


def mlx_in_torch_forward(path: str, source_dir: Path, n_ctx: int, threads: int | None) -> Forward:
    """The MLX artifact's (dequantized) weights in the source model's transformers architecture, fp32 compute:
    the quantization grid MLX serves, evaluated at GEMM speed (MLX's CPU backend runs ~3 GFLOPS here)."""
    hf = hf_forward(str(source_dir), "fp32", n_ctx, threads, weights=mlx_weights(path))
    device = hf.label.rsplit("(", 1)[1].rstrip(")")
    return Forward(hf.logits, f"{hf.version}, weights of the MLX artifact (dequantized to fp32)",
                   f"transformers fp32 of MLX's dequantized weights ({device})")


def mlx_path(mlx_cfg: dict) -> str:
    """How MLX artifacts are evaluated: `mlx` (mlx_lm's forward on the whole text) or `torch` (their weights in
    transformers, mlx_lm's own forward checked on scored positions); `auto`: mlx on a GPU, torch on MLX's CPU
    backend."""
    choice = mlx_cfg.get("forward", "auto")
    if choice != "auto":
        return choice
    import mlx.core as mx
    return "mlx" if mx.default_device().type == mx.DeviceType.gpu else "torch"


def native_check(path: str, expected: np.ndarray, window: list[int], first: int) -> dict:
    """mlx_lm's own forward vs the transformers path on scored positions: `expected` holds the transformers
    logits [k, V] of positions first .. first+k-1 of `window` (the first k scored ones); mlx_lm runs the window's
    prefix up to them. Mean KL, top-1 agreement and the largest absolute logit difference of the next-token
    distributions (same weights, MLX's kernels and dtypes vs fp32)."""
    k = len(expected)
    got = mlx_native(path).logits(window[:first + k])[first:first + k]
    ref = expected - logsumexp(expected)[:, None]
    logp = got - logsumexp(got)[:, None]
    kld = (np.exp(ref) * (ref - logp)).sum(axis=1)
    return {"native_tokens": k, "native_kld": float(kld.mean()),
            "native_top1": float((got.argmax(axis=1) == expected.argmax(axis=1)).mean()),
            "native_max_logit_diff": float(np.abs(got - expected).max())}


# ------------------------------------------------------------------------------------------ llama.cpp

PATTERNS = {          # value and, where llama-perplexity prints one, its ± (a standard error over tokens)
    "ppl": r"Mean PPL\(Q\)\s*:\s*([-\d.]+)",
    "ppl_base": r"Mean PPL\(base\)\s*:\s*([-\d.]+)",
    "ppl_ratio": r"Mean PPL\(Q\)/PPL\(base\)\s*:\s*([-\d.]+)\s*±\s*([-\d.]+)",
    "kld_mean": r"Mean\s+KLD:\s*([-\d.e+]+)\s*±\s*([-\d.e+]+)",
    "kld_max": r"Maximum KLD:\s*([-\d.e+]+)",
    "kld_p99": r"99\.0%\s+KLD:\s*([-\d.e+]+)",
    "top1": r"Same top p:\s*([-\d.]+)\s*±\s*([-\d.]+)\s*%",
}
# one row of llama-perplexity --kl-divergence's per-chunk table, running means over the chunks so far:
# chunk, PPL(Q) ± u, ln(PPL(Q)/PPL(base)) ± u, KLD ± u, Δp RMS ± u %, same top p ± u %
CHUNK_ROW = re.compile(r"^\s*(\d+)" + r"\s+(\S+)\s+±\s+\S+" * 3 + r"\s+\S+\s+±\s+\S+\s+%\s+(\S+)\s+±\s+\S+\s+%\s*$",
                       re.MULTILINE)
TABLE_RESOLUTION = 0.5e-5    # half the last printed digit of the table's ln-ratio and KL running means
RUNNING_PPL = re.compile(r"\[(\d+)\]([\d.]+|[-]?nan|inf),")     # perplexity mode: [chunk]running PPL,


def parse_kld(output: str) -> dict:
    """The statistics llama-perplexity --kl-divergence prints (top1 as a fraction), with the ± it prints for the
    PPL ratio, the mean KLD and top-1 as `<key>_pm`."""
    found = {}
    for key, pattern in PATTERNS.items():
        m = re.search(pattern, output)
        if m is None:
            raise RuntimeError(f"llama-perplexity printed no {key!r}:\n" + llamacpp_build.output_tail(output))
        found[key] = float(m.group(1))
        if m.lastindex == 2:
            found[f"{key}_pm"] = float(m.group(2))
    found["top1"] /= 100
    found["top1_pm"] /= 100
    return found


def pm_intervals(found: dict) -> dict:
    """95 % intervals from llama-perplexity's own ± (parse_kld): normal, over tokens taken as independent (they
    are not within a window: narrower than a bootstrap over windows); ΔPPL from PPL(Q)/PPL(base)."""
    d_lo, d_hi = normal_ci(found["ppl_ratio"] - 1, found["ppl_ratio_pm"])
    k_lo, k_hi = normal_ci(found["kld_mean"], found["kld_mean_pm"])
    t_lo, t_hi = normal_ci(found["top1"], found["top1_pm"])
    return {"delta_ppl_lo": d_lo, "delta_ppl_hi": d_hi, "kld_lo": k_lo, "kld_hi": k_hi,
            "top1_lo": t_lo, "top1_hi": min(t_hi, 1.0)}


def _per_window(running_means, per_window: int) -> np.ndarray:
    """Per-window sums from running means over windows of `per_window` tokens: k*T*m_k - (k-1)*T*m_(k-1)."""
    sums = np.asarray(running_means, dtype=float) * per_window * np.arange(1, len(running_means) + 1)
    return np.diff(sums, prepend=0.0)


def parse_kld_windows(output: str, windows: int, per_window: int) -> dict | None:
    """Per-window sums (logits.WINDOW_COLUMNS) from the per-chunk table of llama-perplexity --kl-divergence,
    whose rows are running means (printed to 4-5 decimals, TABLE_RESOLUTION: a window's sums carry that rounding
    times the windows before it; top-1 matches are whole numbers, recovered exactly). The reference's NLL is the
    base file's, as llama.cpp reads it. None when the table does not hold `windows` rows."""
    rows = [m.groups() for m in CHUNK_ROW.finditer(output)]
    if [int(r[0]) for r in rows] != list(range(1, windows + 1)):
        return None
    ppl, log_ratio, kld, top = (np.array([float(r[i]) for r in rows]) for i in range(1, 5))
    nll = _per_window(np.log(ppl), per_window)
    return {"win_tokens": [per_window] * windows, "win_nll": nll.tolist(),
            "win_nll_ref": (nll - _per_window(log_ratio, per_window)).tolist(),
            "win_kld": _per_window(kld, per_window).tolist(),
            "win_top1": np.diff(np.rint(top / 100 * per_window * np.arange(1, windows + 1)), prepend=0).astype(int)
            .tolist()}


def parse_ppl_windows(output: str, windows: int, per_window: int) -> dict | None:
    """Per-window NLL sums from llama-perplexity's running PPL (`[1]17.8316,[2]10.5278,...`, 4 decimals); None
    when it printed fewer than `windows` values."""
    found = [(int(k), float(v)) for k, v in RUNNING_PPL.findall(output)]
    if [k for k, _ in found] != list(range(1, windows + 1)):
        return None
    return {"win_tokens": [per_window] * windows,
            "win_nll": _per_window(np.log([v for _, v in found]), per_window).tolist()}


def parse_final_ppl(output: str) -> float:
    m = re.search(r"Final estimate: PPL = ([\d.]+)", output)
    if m is None:
        raise RuntimeError("llama-perplexity printed no final PPL:\n" + llamacpp_build.output_tail(output))
    return float(m.group(1))


def llamacpp_label() -> str:
    """Whose forward pass a GGUF row is: llama-perplexity on the accelerator llama.cpp was built for (it offloads
    every layer it can by default), else its CPU backend."""
    bin_dir = llamacpp_build.build_dir() / "bin"
    libs = {p.name.split(".")[0].removeprefix("libggml-") for p in bin_dir.glob("libggml-*")}
    accel = [name for key, name in (("cuda", "CUDA"), ("metal", "Metal"), ("hip", "ROCm"), ("vulkan", "Vulkan"),
                                    ("sycl", "SYCL")) if key in libs]
    return f"llama-perplexity (llama.cpp {accel[0] if accel else 'CPU'})"


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
