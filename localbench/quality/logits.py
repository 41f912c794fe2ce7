"""Next-token log-probabilities: llama.cpp's KL base file, its uint16 encoding, and the per-token scores.

The reference's log-probabilities are stored in llama.cpp's `--kl-divergence-base` format (uint16 log-probs
per token, truncated 16 nats below the top, `_logits_` header + tokens): llama-perplexity reads it for GGUF
rows, `Scores` computes the same statistics for MLX/HF rows with llama.cpp's formulas (KL summed over
reference log-probs > -16, top-1 = same argmax).

**Per window.** Every row keeps, per scored window, its sums (`WINDOW_COLUMNS`: tokens, NLL of the artifact and
of the reference on the same tokens, KL, top-1 matches); `window_intervals` turns them into bootstrap 95 %
intervals over windows (tokens within a window are not independent: the window is the unit resampled).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localbench.core.stats import bootstrap_ci

MAGIC = b"_logits_"
FLOOR = -16.0            # llama.cpp ignores reference log-probs at or below this in the KL sum


def logsumexp(x: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp of logits [n, V] (summed in float64, returned as float32)."""
    top = x.max(axis=1)
    return top + np.log(np.exp((x - top[:, None]).astype(np.float64)).sum(axis=1)).astype(np.float32)


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

WINDOW_COLUMNS = ["win_tokens", "win_nll", "win_nll_ref", "win_kld", "win_top1"]   # per scored window: lists


@dataclass
class Scores:
    """Per scored token, one array per window: negative log-likelihood, KL(reference || artifact), same argmax."""
    nll: list[np.ndarray]
    kld: list[np.ndarray]
    same_top: list[np.ndarray]

    def add(self, logits: np.ndarray, targets: np.ndarray, ref_logp: np.ndarray | None) -> None:
        logits = np.asarray(logits, dtype=np.float32)
        logp = logits - logsumexp(logits)[:, None]
        self.nll.append(-logp[np.arange(len(targets)), targets].astype(np.float64))
        if ref_logp is not None:
            mask = ref_logp > FLOOR
            terms = np.where(mask, np.exp(np.where(mask, ref_logp, 0)) * (ref_logp - logp), 0)
            self.kld.append(terms.sum(axis=1, dtype=np.float64))
            self.same_top.append(logits.argmax(axis=1) == ref_logp.argmax(axis=1))

    def summary(self) -> dict:
        """Totals over every scored token, and the per-window sums (the reference's NLL is filled in later)."""
        nll = np.concatenate(self.nll)
        out = {"tokens_scored": int(len(nll)), "ppl": float(np.exp(nll.mean())),
               "win_tokens": [len(w) for w in self.nll], "win_nll": [float(w.sum()) for w in self.nll]}
        if self.kld:
            kld = np.concatenate(self.kld)
            out |= {"kld_mean": float(kld.mean()), "kld_p99": float(np.percentile(kld, 99)),
                    "kld_max": float(kld.max()), "top1": float(np.concatenate(self.same_top).mean()),
                    "win_kld": [float(w.sum()) for w in self.kld], "win_top1": [int(w.sum()) for w in self.same_top]}
        return out


def window_intervals(tokens, nll, nll_ref, kld, top1, resolution: float = 0.0) -> dict:
    """Bootstrap 95 % intervals over scored windows (localbench.core.stats.bootstrap_ci) of ΔPPL = PPL/PPL(ref) - 1,
    mean KL and top-1 agreement from per-window sums; NaN where a sum is missing or below 2 windows. Every window
    scores the same number of tokens, so the mean of the per-window means is the pooled mean: ΔPPL's interval is
    exp(interval of the mean NLL difference) - 1. `resolution`: how far a per-window mean of NLL difference or KL
    may be off by rounding (sums recovered from printed running means): the bounds are widened by it."""
    t = np.asarray(tokens, dtype=float)
    if t.size and (t != t[0]).any():
        raise ValueError(f"windows scored different numbers of tokens ({sorted(set(t.tolist()))})")

    def ci(sums, pad: float = 0.0) -> tuple[float, float]:
        if sums is None or len(sums) != t.size:
            return math.nan, math.nan
        lo, hi = bootstrap_ci(np.asarray(sums, dtype=float) / t)
        return lo - pad, hi + pad

    have_ref = nll is not None and nll_ref is not None and len(nll_ref) == len(nll)
    d_lo, d_hi = ci(np.subtract(nll, nll_ref), resolution) if have_ref else (math.nan, math.nan)
    (k_lo, k_hi), (t_lo, t_hi) = ci(kld, resolution), ci(top1)
    return {"delta_ppl_lo": math.expm1(d_lo), "delta_ppl_hi": math.expm1(d_hi), "kld_lo": k_lo, "kld_hi": k_hi,
            "top1_lo": t_lo, "top1_hi": t_hi}
