"""Quantization quality beside speed: perplexity, KL divergence and top-1 agreement of every artifact.

Every artifact is evaluated on ONE fixed evaluation text, through the forward pass of the runtime that
serves its format: GGUF with llama.cpp's `llama-perplexity` (`--kl-divergence-base FILE --kl-divergence`),
MLX with mlx_lm's model forward, HF folders with transformers. MLC and Ollama expose no prompt logits
through the APIs this project drives: their rows say so (unavailable / unsupported, with the reason).

**Text.** `cfg['text']` lists segments in order: a file of the running interpreter's standard library
(code) and a topic of the Language Reference shipped with it (`pydoc_data.topics`, prose under the PSF
License). Each is cut to its `tokens` quota (by the model's HF tokenizer's offsets), recorded by sha256 (a
mismatch with the pinned hash, e.g. another Python version, is stated in every row), joined by a blank line.

**Tokens.** The canonical ids are the HF tokenizer's (models/source) for the whole text, without special
tokens, plus BOS at the start when the GGUF (else the HF tokenizer) says the model adds one: exactly what
`llama-perplexity` does (`common_tokenize(text, add_special=true)`, special-token text not parsed). The ids
are handed to llama.cpp inside the KL base file (the file holds the tokens; `--kl-divergence` reads them
from it), so every runtime sees the same ids; llama.cpp's own tokenization of the text is compared with
them and recorded per GGUF row (`ids_match`).

**Windows.** The first `windows * n_ctx` tokens are cut into `windows` windows of `n_ctx`; each is
evaluated from an empty cache, BOS replacing its first token when the model adds BOS, and the second half
is scored: logits at positions n_ctx/2 .. n_ctx-2 predict tokens n_ctx/2+1 .. n_ctx-1 (llama-perplexity's
scheme, `n_ctx/2 - 1` scored tokens per window).

**Reference.** The first available artifact of `cfg['reference']` (default HF fp32: fp32 weights and fp32
compute in transformers, the highest precision here); one reference for all runtimes. Its next-token
log-probabilities are stored in llama.cpp's KL base format (uint16 log-probs per token, truncated 16 nats
below the top, `_logits_` header + tokens): llama-perplexity reads it for GGUF rows, Python computes the
same statistics for MLX/HF rows with llama.cpp's formulas (KL summed over reference log-probs > -16,
top-1 = same argmax). When the reference is a GGUF, llama-perplexity writes that file itself
(`--kl-divergence-base` without `--kl-divergence`).
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from localbench.config.registry import FORMAT_RUNTIME
from localbench.core.hardware import FLOAT_DTYPES, torch_device

log = logging.getLogger("quality")

FULL_PRECISION = {"gguf": ("F32", "BF16", "F16"), "hf": ("fp32", "bf16", "fp16"), "mlx": ("fp32", "bf16", "fp16")}
MAGIC = b"_logits_"
FLOOR = -16.0            # llama.cpp ignores reference log-probs at or below this in the KL sum
COLUMNS = ["model", "format", "quant", "runtime", "runtime_version", "status", "reason", "reference",
           "n_ctx", "windows", "tokens_scored", "ppl", "ppl_ref", "delta_ppl", "kld_mean", "kld_p99", "kld_max",
           "top1", "ids_match", "native_tokens", "native_kld", "native_top1", "eval_s", "text_sha256",
           "text_pinned"]
SYNTHETIC_REASON = ("the model source is synthetic (random weights): perplexity and KL divergence of random "
                    "weights say nothing about quantization quality, so the quality stage writes no rows")


# ---------------------------------------------------------------------------------------------- text

def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def segment_text(segment: dict) -> tuple[str, str]:
    """(text, label) of one segment: {stdlib: relative path} or {pydoc_topic: name} of the running Python."""
    if "stdlib" in segment:
        path = Path(sysconfig.get_paths()["stdlib"]) / segment["stdlib"]
        return path.read_text(encoding="utf-8"), f"stdlib {segment['stdlib']}"
    if "pydoc_topic" in segment:
        from pydoc_data.topics import topics
        return topics[segment["pydoc_topic"]], f"pydoc_data.topics[{segment['pydoc_topic']!r}]"
    raise ValueError(f"quality.text segment {segment} names neither `stdlib` nor `pydoc_topic`")


@dataclass
class EvalText:
    text: str
    sources: list[dict]     # label, sha256 (of the whole source), pinned (matches cfg), tokens quota, chars used

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)

    @property
    def pinned(self) -> bool:
        return all(s["pinned"] for s in self.sources)


def build_text(segments: list[dict], tokenizer) -> EvalText:
    """The evaluation text: each segment cut to its token quota at a token boundary, joined by a blank line."""
    parts, sources = [], []
    for seg in segments:
        text, label = segment_text(seg)
        digest = sha256_text(text)
        quota = int(seg["tokens"])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) > quota:
            text = text[:enc["offset_mapping"][quota - 1][1]]
        parts.append(text)
        sources.append({"label": label, "sha256": digest, "pinned": digest == seg.get("sha256"),
                        "tokens": quota, "chars": len(text), "python": sys.version.split()[0]})
    return EvalText("\n\n".join(parts), sources)


def canonical_ids(text: str, tokenizer, add_bos: bool) -> list[int]:
    """The HF tokenizer's ids of the text (no special tokens added), BOS first when the model adds one."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ([int(tokenizer.bos_token_id)] if add_bos else []) + ids


def tokenizer_adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def windows_of(ids: list[int], n_ctx: int, windows: int, bos: int | None) -> list[list[int]]:
    """`windows` consecutive windows of n_ctx ids; with BOS, it replaces each window's first id (llama.cpp)."""
    if len(ids) < windows * n_ctx:
        raise ValueError(f"the evaluation text has {len(ids)} tokens, fewer than windows*n_ctx = "
                         f"{windows}*{n_ctx}: raise the segments' token quotas in conf/quality")
    out = []
    for w in range(windows):
        win = list(ids[w * n_ctx:(w + 1) * n_ctx])
        if bos is not None:
            win[0] = bos
        out.append(win)
    return out


# ------------------------------------------------------------------------------- llama.cpp KL base file

def row_width(n_vocab: int) -> int:
    return 2 * ((n_vocab + 1) // 2) + 4


def encode_logprobs(logits: np.ndarray) -> np.ndarray:
    """Rows of llama.cpp's base file for logits [n, V]: (scale, min log-prob) as 2 float32 + V uint16."""
    logits = np.asarray(logits, dtype=np.float32)
    n, n_vocab = logits.shape
    top = logits.max(axis=1)
    low = np.maximum(logits.min(axis=1), top - 16)
    lse = np.log(np.exp((logits - top[:, None]).astype(np.float64)).sum(axis=1)).astype(np.float32)
    min_log_prob = (low - top - lse).astype(np.float32)
    scale = ((top - low) / 65535.0).astype(np.float32)
    inv = np.where(scale > 0, 1 / np.where(scale > 0, scale, 1), 0).astype(np.float32)
    q = np.rint(inv[:, None] * (logits - low[:, None]))
    q = np.where(logits > low[:, None], np.clip(q, 0, 65535), 0).astype(np.uint16)
    rows = np.zeros((n, row_width(n_vocab)), dtype=np.uint16)
    rows[:, :4] = np.stack([scale, min_log_prob], axis=1).astype(np.float32).view(np.uint16)
    rows[:, 4:4 + n_vocab] = q
    return rows


def decode_logprobs(rows: np.ndarray, n_vocab: int) -> np.ndarray:
    """Reference log-probs [n, V] (float32) from base-file rows, as llama.cpp reads them."""
    head = np.ascontiguousarray(rows[:, :4]).view(np.float32)
    return head[:, :1] * rows[:, 4:4 + n_vocab].astype(np.float32) + head[:, 1:2]


class BaseFile:
    """llama.cpp's `--kl-divergence-base` file: header, tokens, then per window (n_ctx-1-n_ctx/2) rows."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            if f.read(8) != MAGIC:
                raise ValueError(f"{path} is not a llama.cpp log-probability file")
            self.n_ctx, self.n_vocab, self.n_chunk = (int(x) for x in np.frombuffer(f.read(12), dtype="<i4"))
            self.tokens = np.frombuffer(f.read(4 * self.n_ctx * self.n_chunk), dtype="<i4").tolist()
        self.offset = 20 + 4 * self.n_ctx * self.n_chunk
        self.per_window = self.n_ctx - 1 - self.n_ctx // 2
        self.rows = np.memmap(self.path, dtype="<u2", mode="r", offset=self.offset,
                              shape=(self.n_chunk * self.per_window, row_width(self.n_vocab)))

    def window(self, w: int) -> np.ndarray:
        return decode_logprobs(self.rows[w * self.per_window:(w + 1) * self.per_window], self.n_vocab)

    @staticmethod
    def write(path: Path, n_ctx: int, n_vocab: int, tokens: list[int], windows_rows: list[np.ndarray]) -> None:
        with open(path, "wb") as f:
            f.write(MAGIC)
            f.write(np.array([n_ctx, n_vocab, len(windows_rows)], dtype="<i4").tobytes())
            f.write(np.asarray(tokens[:n_ctx * len(windows_rows)], dtype="<i4").tobytes())
            for rows in windows_rows:
                f.write(np.ascontiguousarray(rows, dtype="<u2").tobytes())


# ---------------------------------------------------------------------------------------- statistics

@dataclass
class Scores:
    """Per scored token: negative log-likelihood, KL(reference || artifact), same argmax."""
    nll: list[np.ndarray]
    kld: list[np.ndarray]
    same_top: list[np.ndarray]

    def add(self, logits: np.ndarray, targets: np.ndarray, ref_logp: np.ndarray | None) -> None:
        logits = np.asarray(logits, dtype=np.float32)
        top = logits.max(axis=1)
        lse = top + np.log(np.exp((logits - top[:, None]).astype(np.float64)).sum(axis=1)).astype(np.float32)
        logp = logits - lse[:, None]
        self.nll.append(-logp[np.arange(len(targets)), targets].astype(np.float64))
        if ref_logp is not None:
            mask = ref_logp > FLOOR
            terms = np.where(mask, np.exp(np.where(mask, ref_logp, 0)) * (ref_logp - logp), 0)
            self.kld.append(terms.sum(axis=1, dtype=np.float64))
            self.same_top.append(logits.argmax(axis=1) == ref_logp.argmax(axis=1))

    def summary(self) -> dict:
        nll = np.concatenate(self.nll)
        out = {"tokens_scored": int(len(nll)), "ppl": float(np.exp(nll.mean()))}
        if self.kld:
            kld = np.concatenate(self.kld)
            out |= {"kld_mean": float(kld.mean()), "kld_p99": float(np.percentile(kld, 99)),
                    "kld_max": float(kld.max()), "top1": float(np.concatenate(self.same_top).mean())}
        return out


def scored(window: list[int], n_ctx: int) -> tuple[int, np.ndarray]:
    """(first scored logit position, target ids) of a window: positions n_ctx/2..n_ctx-2 predict the next id."""
    first = n_ctx // 2
    return first, np.asarray(window[first + 1:n_ctx])


# ------------------------------------------------------------------------------- Python forward passes

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
    ref = full[:tokens] - _lse(full[:tokens])[:, None]
    logp = got - _lse(got)[:, None]
    kld = (np.exp(ref) * (ref - logp)).sum(axis=1)
    return {"native_tokens": tokens, "native_kld": float(kld.mean()),
            "native_top1": float((got.argmax(axis=1) == full[:tokens].argmax(axis=1)).mean())}


def _lse(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1)
    return top + np.log(np.exp((x - top[:, None]).astype(np.float64)).sum(axis=1)).astype(np.float32)


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
    from localbench.builds import llamacpp as llamacpp_build
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
    from localbench.builds import llamacpp as llamacpp_build
    return f"llama.cpp (llama-cpp-python {llamacpp_build.VERSION}) llama-perplexity"


# ----------------------------------------------------------------------------------------- the stage

def row(art: dict, status: str, reason: str = "", **values) -> dict:
    out = {c: None for c in COLUMNS}
    out |= {"model": art.get("model"), "format": art["format"], "quant": art["quant"],
            "runtime": FORMAT_RUNTIME.get(art["format"], art["format"]), "status": status, "reason": reason}
    out |= values
    return out


def pick_reference(artifacts: list[dict], preference: list[str]) -> dict | None:
    ok = {f"{a['format']}/{a['quant']}": a for a in artifacts if a.get("status") == "ok"}
    return next((ok[name] for name in preference if name in ok), None)


def evaluate(artifacts: list[dict], cfg: dict, source_dir: Path, work: Path, source: str = "") -> list[dict]:
    """Quality rows for the artifacts (rows of data/artifacts.parquet as dicts); none for a synthetic source."""
    if source == "synthetic":
        log.info(SYNTHETIC_REASON)
        return []
    from transformers import AutoTokenizer

    work.mkdir(parents=True, exist_ok=True)
    n_ctx, n_win, threads = int(cfg["n_ctx"]), int(cfg["windows"]), cfg.get("threads")
    mlx_cfg = cfg.get("mlx") or {}
    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    text = build_text(cfg["text"], tokenizer)
    text_file = work / "eval.txt"
    text_file.write_text(text.text, encoding="utf-8")
    ggufs = [a for a in artifacts if a["format"] == "gguf" and a["status"] == "ok"]
    gguf_meta = gguf_vocab(ggufs[0]["path"]) if ggufs else None
    add_bos = gguf_meta[0] if gguf_meta else tokenizer_adds_bos(tokenizer)
    bos = tokenizer.bos_token_id if add_bos else None
    ids = canonical_ids(text.text, tokenizer, add_bos)
    wins = windows_of(ids, n_ctx, n_win, bos)
    common = {"n_ctx": n_ctx, "windows": n_win, "text_sha256": text.sha256, "text_pinned": text.pinned}
    if not text.pinned:
        log.warning("evaluation text differs from the pinned sha256 (%s): numbers are not comparable with runs "
                    "on another Python version", [s["label"] for s in text.sources if not s["pinned"]])
    ref = pick_reference(artifacts, list(cfg["reference"]))
    rows: dict[tuple[str, str], dict] = {}
    if ref is None:
        log.error("no reference artifact among %s", cfg["reference"])
    ref_name = f"{ref['format']}/{ref['quant']}" if ref else None
    base = work / "reference.kld"
    ref_ok = False

    def python_eval(art: dict, reference: BaseFile | None) -> dict:
        t0 = time.perf_counter()
        extra = {}
        if art["format"] == "hf":
            forward, version = hf_forward(art["path"], art["quant"], n_ctx, threads)
        elif mlx_path(mlx_cfg) == "mlx":
            forward, version = mlx_forward(art["path"], n_ctx)
        else:
            forward, version = mlx_in_torch_forward(art["path"], source_dir, n_ctx, threads)
            if art["quant"] in (mlx_cfg.get("check_quants") or []):
                extra = native_check(art["path"], forward, wins[0], n_ctx, int(mlx_cfg.get("check_tokens", 64)))
        scores, ref_rows = Scores([], [], []), []
        for w, win in enumerate(wins):
            logits = forward(win)
            _, targets = scored(win, n_ctx)
            scores.add(logits, targets, reference.window(w) if reference else None)
            if reference is None:
                ref_rows.append(encode_logprobs(logits))
        if reference is None:
            BaseFile.write(base, n_ctx, int(logits.shape[1]), ids, ref_rows)
        return {"runtime_version": version, "eval_s": time.perf_counter() - t0, **scores.summary(), **extra}

    # 1. the reference: its log-probs become llama.cpp's base file
    if ref is not None:
        try:
            if ref["format"] == "gguf":
                t0 = time.perf_counter()
                out = llama_perplexity(ref["path"], text_file, base, n_ctx, n_win, threads, write_base=True)
                values = {"ppl": parse_final_ppl(out), "runtime_version": llamacpp_version(),
                          "tokens_scored": n_win * (n_ctx - 1 - n_ctx // 2), "eval_s": time.perf_counter() - t0}
                if BaseFile(base).tokens != ids[:n_ctx * n_win]:
                    raise RuntimeError("llama.cpp tokenized the evaluation text differently from the HF tokenizer; "
                                       "pick a Python reference (quality.reference)")
            elif ref["format"] in ("hf", "mlx"):
                values = python_eval(ref, None)
            else:
                raise ValueError(f"format {ref['format']} cannot be the reference")
            ref_ok = True
            values |= {"kld_mean": 0.0, "kld_p99": 0.0, "kld_max": 0.0, "top1": 1.0}     # by definition
            rows[(ref["format"], ref["quant"])] = row(ref, "ok", "reference", reference=ref_name, **common, **values)
        except Exception as exc:  # noqa: BLE001 - recorded, the stage goes on
            log.exception("reference %s failed", ref_name)
            rows[(ref["format"], ref["quant"])] = row(ref, "error", f"{type(exc).__name__}: {exc}"[:400],
                                                      reference=ref_name, **common)
    reference = BaseFile(base) if ref_ok else None
    if reference is not None and reference.tokens != ids[:n_ctx * n_win]:
        raise AssertionError("the reference file's tokens differ from the canonical ids")

    # 2. every other artifact, through its own runtime
    for art in artifacts:
        key = (art["format"], art["quant"])
        if key in rows:
            continue
        if art.get("status") != "ok":
            rows[key] = row(art, "unavailable", f"artifact not converted: {art.get('error') or art.get('status')}",
                            reference=ref_name, **common)
            continue
        if art["format"] not in ("gguf", "hf", "mlx"):
            rows[key] = row(art, "unsupported", f"{FORMAT_RUNTIME.get(art['format'], art['format'])} exposes no "
                            "prompt logits through the API this project drives", reference=ref_name, **common)
            continue
        log.info("quality: %s/%s", *key)
        try:
            if art["format"] == "gguf":
                if reference is None:
                    raise RuntimeError(f"no reference log-probs ({ref_name} failed)")
                t0 = time.perf_counter()
                out = llama_perplexity(art["path"], text_file, base, n_ctx, n_win, threads, write_base=False)
                values = parse_kld(out)
                values.pop("ppl_base")
                values |= {"runtime_version": llamacpp_version(), "eval_s": time.perf_counter() - t0,
                           "tokens_scored": n_win * (n_ctx - 1 - n_ctx // 2)}
            else:
                values = python_eval(art, reference)
            rows[key] = row(art, "ok", reference=ref_name, **common, **values)
        except Exception as exc:  # noqa: BLE001 - recorded, the stage goes on
            log.exception("%s/%s failed", *key)
            rows[key] = row(art, "error", f"{type(exc).__name__}: {exc}"[:400], reference=ref_name, **common)

    # 3. llama.cpp's own tokenization of the text vs the canonical ids, per GGUF
    for art in ggufs:
        r = rows[(art["format"], art["quant"])]
        try:
            r["ids_match"] = llamacpp_ids(art["path"], text.text, add_bos)[:n_ctx * n_win] == ids[:n_ctx * n_win]
        except Exception as exc:  # noqa: BLE001
            log.warning("llama.cpp tokenization check failed: %s", exc)
    ordered = [rows[(a["format"], a["quant"])] for a in artifacts]
    ref_ppl = rows.get((ref["format"], ref["quant"]), {}).get("ppl") if ref else None
    for r in ordered:
        r["ppl_ref"] = ref_ppl
        r["delta_ppl"] = (r["ppl"] / ref_ppl - 1) if r["ppl"] is not None and ref_ppl else None
    return ordered + unserved_rows(artifacts, ref_name, common)


def unserved_rows(artifacts: list[dict], ref_name: str | None, common: dict) -> list[dict]:
    """Ollama serves the pipeline's own GGUFs but returns no logits: one row per GGUF saying so."""
    ggufs = [a for a in artifacts if a["format"] == "gguf"]
    if not ggufs:
        return []
    r = row({**ggufs[0], "quant": ", ".join(a["quant"] for a in ggufs)}, "unsupported",
            "Ollama's API returns no next-token distribution (no prompt logits); it runs the same GGUF files as "
            "llama.cpp's rows", reference=ref_name, **common)
    r["runtime"] = "ollama"
    return [r]


def to_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("ppl", "ppl_ref", "delta_ppl", "kld_mean", "kld_p99", "kld_max", "top1", "native_kld", "native_top1",
                "eval_s"):
        frame[col] = frame[col].astype(float)
    return frame


def metrics(frame: pd.DataFrame) -> dict:
    """metrics/quality.json: per format/quant the headline numbers (dvc metrics / exp show)."""
    out: dict = {}
    for r in frame[(frame["status"] == "ok")].itertuples():
        out.setdefault(r.format, {})[r.quant] = {
            k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6))
            for k, v in (("ppl", r.ppl), ("delta_ppl", r.delta_ppl), ("kld_mean", r.kld_mean),
                         ("kld_p99", r.kld_p99), ("top1", r.top1))}
    refs = frame["reference"].dropna().unique()
    return {"reference": refs[0] if len(refs) else None, "artifacts": out}


# ------------------------------------------------------------------------ frontier, checks, claim, report

SPEED_KEYS = ("workload", "prompt_tokens", "transport")


def decode_speed(requests: pd.DataFrame | None, speed: dict) -> pd.DataFrame:
    """Warm single-stream decode tok/s per (runtime, quant) in the configured cell (mean, n, max_tokens)."""
    cols = ["runtime", "quant", "decode_tps", "decode_n", "speed_cell"]
    if requests is None or requests.empty:
        return pd.DataFrame(columns=cols)
    warm = requests[(requests["status"] == "ok") & (requests["phase"] == "warm") & (requests["concurrency"] == 1)
                    & ~requests["cache_reuse"].fillna(False).astype(bool)]
    for key in SPEED_KEYS:
        if speed.get(key) is not None:
            warm = warm[warm[key] == speed[key]]
    out = []
    for (runtime, quant), g in warm.groupby(["runtime", "quant"]):
        cell = f"{speed.get('workload') or '*'}/{speed.get('prompt_tokens') or '*'} in, " \
               f"{'/'.join(str(int(m)) for m in sorted(g['max_tokens'].unique()))} out, {speed.get('transport') or '*'}"
        out.append({"runtime": runtime, "quant": quant, "decode_tps": float(g["decode_tps"].mean()),
                    "decode_n": int(len(g)), "speed_cell": cell})
    return pd.DataFrame(out, columns=cols)


def pareto(speed: pd.Series, loss: pd.Series) -> pd.Series:
    """True where no other point is at least as fast with at most the loss (and better in one)."""
    ok = speed.notna() & loss.notna()
    flags = pd.Series(False, index=speed.index)
    for i in speed.index[ok]:
        dominated = ((speed[ok] >= speed[i]) & (loss[ok] <= loss[i]) &
                     ((speed[ok] > speed[i]) | (loss[ok] < loss[i]))).any()
        flags[i] = not dominated
    return flags


def frontier(quality: pd.DataFrame, artifacts: pd.DataFrame, requests: pd.DataFrame | None,
             cfg: dict) -> pd.DataFrame:
    """Quality rows beside size, bits/weight (data/artifacts.parquet) and warm decode tok/s (requests)."""
    arts = artifacts[["format", "quant", "size_bytes", "bits_per_weight"]]
    frame = quality.merge(arts, on=["format", "quant"], how="left")
    frame = frame.merge(decode_speed(requests, cfg.get("speed") or {}), on=["runtime", "quant"], how="left")
    frame["size_mib"] = frame["size_bytes"] / 2**20
    front = pareto(frame["decode_tps"].astype(float), frame["kld_mean"].astype(float))
    frame["pareto"] = front.where(frame["decode_tps"].notna() & frame["kld_mean"].notna()).astype(object)
    return frame


def cross_runtime(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """The same weights through different runtimes: each full-precision artifact's PPL vs the reference's."""
    ok = frame[(frame["status"] == "ok") & frame.apply(lambda r: r["quant"] in FULL_PRECISION.get(r["format"], ()),
                                                        axis=1)] if len(frame) else frame
    rows = []
    for r in ok.itertuples():
        if r.reason == "reference":
            continue
        diff = abs(r.ppl / r.ppl_ref - 1)
        via = " (its weights in transformers)" if "weights of the MLX artifact" in str(getattr(r, "runtime_version", "")) else ""
        rows.append({"check": f"{r.runtime} {r.format}/{r.quant}{via} vs {r.reference}", "ppl": r.ppl,
                     "ppl_ref": r.ppl_ref, "rel_diff": diff, "kld_mean": r.kld_mean, "top1": r.top1,
                     "verdict": "agree" if diff <= tolerance else "DISAGREE"})
    native = frame[frame["native_kld"].notna()] if "native_kld" in frame else frame.iloc[:0]
    for r in native.itertuples():
        # ln(PPL) moves by at most about the mean KL between the two distributions: hold it to the same tolerance
        rows.append({"check": f"mlx_lm forward vs {r.format}/{r.quant} weights in transformers "
                              f"(first {int(r.native_tokens)} tokens)", "ppl": None, "ppl_ref": None,
                     "rel_diff": None, "kld_mean": r.native_kld, "top1": r.native_top1,
                     "verdict": "agree" if r.native_kld <= math.log1p(tolerance) else "DISAGREE"})
    return pd.DataFrame(rows, columns=["check", "ppl", "ppl_ref", "rel_diff", "kld_mean", "top1", "verdict"])


CLAIM = "Quantization improves efficiency without noticeable accuracy loss"


def claim_rows(frame: pd.DataFrame, cfg: dict) -> list[dict]:
    """The claim judged per quantized artifact: no noticeable loss = ΔPPL < max_delta_ppl and top-1 agreement
    > min_top1 against the reference; efficiency = fewer bits per weight than the reference and, where decode
    was measured for both in one runtime, faster decode. {claim, verdict, evidence} rows."""
    thr = cfg.get("claim") or {}
    max_dppl, min_top1 = float(thr.get("max_delta_ppl", 0.02)), float(thr.get("min_top1", 0.90))
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    quants = ok[~ok.apply(lambda r: r["quant"] in FULL_PRECISION.get(r["format"], ()), axis=1)] if len(ok) else ok
    if quants.empty:
        return [{"claim": CLAIM, "verdict": "not testable here",
                 "evidence": "no quantized artifact with quality numbers (synthetic weights or none converted)"}]
    ref = ok[ok["reason"] == "reference"]
    ref_bpw = float(ref["bits_per_weight"].iloc[0]) if len(ref) and "bits_per_weight" in ref else float("nan")
    out = []
    for r in quants.itertuples():
        full = ok[(ok["format"] == r.format) & ok["quant"].isin(FULL_PRECISION.get(r.format, ()))]
        base_tps = full["decode_tps"].max() if "decode_tps" in full and len(full) else float("nan")
        loss_ok = r.delta_ppl < max_dppl and r.top1 > min_top1
        smaller = bool(r.bits_per_weight < ref_bpw) if not math.isnan(ref_bpw) else None
        faster = bool(r.decode_tps > base_tps) if not (pd.isna(r.decode_tps) or pd.isna(base_tps)) else None
        evidence = (f"ΔPPL {r.delta_ppl:+.2%} (threshold < {max_dppl:.0%}), top-1 {r.top1:.1%} (> {min_top1:.0%}), "
                    f"KLD {r.kld_mean:.4f}; {r.bits_per_weight:.2f} vs {ref_bpw:.2f} bits/weight"
                    + (f"; decode {r.decode_tps:.1f} vs {base_tps:.1f} tok/s ({r.format} full precision)"
                       if faster is not None else "; decode not measured in a shared cell"))
        if not loss_ok or smaller is False or faster is False:
            verdict = "contradicted"
        elif smaller is None:
            verdict = "not testable here"
        else:
            verdict = "supported"
        out.append({"claim": f"{CLAIM}: {r.runtime} {r.format}/{r.quant}", "verdict": verdict, "evidence": evidence})
    return out


def figure(frame: pd.DataFrame, path: Path, dpi: int = 120, style: str = "whitegrid") -> Path | None:
    """Decode tok/s vs mean KL divergence, one point per artifact, the Pareto front drawn; None without data."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = frame[(frame["status"] == "ok") & frame["decode_tps"].notna() & frame["kld_mean"].notna()].copy()
    data["pareto"] = data["pareto"].astype(bool)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data.empty:
        return None
    sns.set_theme(style=style)
    data["artifact"] = data["runtime"] + " " + data["quant"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sns.scatterplot(data=data, x="kld_mean", y="decode_tps", hue="runtime", style="pareto", s=80, ax=ax)
    front = data[data["pareto"]].sort_values("kld_mean")
    ax.step(front["kld_mean"], front["decode_tps"], where="post", color="black", lw=1, ls="--",
            label="Pareto front")
    for r in data.itertuples():
        ax.annotate(r.artifact, (r.kld_mean, r.decode_tps), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(left=0)
    ax.set(xlabel="mean KL divergence vs the reference (nats/token, symlog)", ylabel="decode tok/s (warm)",
           title="Quality vs speed, one point per artifact")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def forward_of(r) -> str:
    """Whose forward pass produced a row's logits."""
    version = str(r.get("runtime_version") or "")
    if r.get("status") != "ok":
        return ""
    if "weights of the MLX artifact" in version:
        return "transformers (MLX weights, fp32)"
    return {"gguf": "llama-perplexity", "hf": "transformers", "mlx": "mlx_lm"}.get(r["format"], "")


def section(frame: pd.DataFrame, cfg: dict) -> str:
    """The report's Markdown: the quality-size-speed table, the cross-runtime check, the figure, the claim rows.
    `cfg` is the quality params block (+ `source`: the model source, `figure`: the figure's path relative to
    the report)."""
    from localbench.core.markdown import table

    head = "## Quantization quality beside size and speed\n"
    if frame is None or frame.empty:
        why = SYNTHETIC_REASON if cfg.get("source") == "synthetic" else "no artifact was evaluated"
        return head + f"\n_No quality rows: {why}._\n"
    ok = frame[frame["status"] == "ok"]
    ref = ok[ok["reason"] == "reference"]
    ref_text = (f"`{ref['reference'].iloc[0]}` (perplexity {ref['ppl'].iloc[0]:.4g}, {ref['runtime'].iloc[0]})"
                if len(ref) else "none (the reference failed)")
    first = frame.iloc[0]
    pinned = "" if bool(first["text_pinned"]) else " **It differs from the pinned text** (another Python version?)."
    matches = frame["ids_match"].dropna()
    ids_note = ("llama.cpp's own tokenization of the text gives the same ids" if len(matches) and matches.all() else
                "**llama.cpp's own tokenization differs from the HF ids** (the ids are still the same for every "
                "runtime: they are passed in the base file)" if len(matches) else "")
    speed = cfg.get("speed") or {}
    intro = (f"Every artifact evaluated on one fixed text (sha256 `{first['text_sha256'][:12]}`: a standard-library "
             f"source file and a Language Reference topic of the running Python, token quotas in conf/quality){pinned} "
             f"with the runtime that serves its format, in {int(first['windows'])} windows of {int(first['n_ctx'])} "
             f"tokens, the second half of each scored ({int(ok['tokens_scored'].max()) if len(ok) else 0} tokens). "
             f"All runtimes get the same token ids (the HF tokenizer's; {ids_note or 'no GGUF'}). Reference: "
             f"{ref_text}; ΔPPL = PPL / PPL(reference) − 1; KLD = KL(reference ‖ artifact) per token (llama.cpp's "
             f"definition: reference log-probs below −16 ignored), mean and p99; top-1 = same most likely token. "
             f"Decode tok/s: warm single-stream mean in the cell {speed.get('workload')}/{speed.get('prompt_tokens')} "
             f"prompt tokens ({speed.get('transport')}). Pareto: no other artifact is both faster and closer.\n")
    show = frame.assign(delta_ppl_pct=frame["delta_ppl"] * 100, top1_pct=frame["top1"] * 100,
                        forward=frame.apply(forward_of, axis=1))
    cols = ["runtime", "forward", "format", "quant", "status", "size_mib", "bits_per_weight", "ppl", "delta_ppl_pct", "kld_mean",
            "kld_p99", "top1_pct", "decode_tps", "pareto", "reason"]
    show = show[[c for c in cols if c in show]]
    tol = float(cfg.get("cross_runtime_tolerance", 0.02))
    cross = cross_runtime(frame, tol)
    cross_text = (table(cross) if len(cross) else "_Only one runtime evaluated a full-precision artifact: not "
                  "testable here._\n")
    flag = ("**Disagreement: a conversion or a runtime is wrong.**\n" if (cross["verdict"] == "DISAGREE").any()
            else "")
    fig = cfg.get("figure")
    parts = [head, intro, table(show),
             f"\n### Cross-runtime check (same weights, PPL within {tol:.1%} of the reference)\n", cross_text, flag,
             (f"\n![decode tok/s vs KL divergence]({fig})\n" if fig else ""),
             f"\n### Claim: {CLAIM.lower()}\n", table(pd.DataFrame(claim_rows(frame, cfg)))]
    return "\n".join(p for p in parts if p)
