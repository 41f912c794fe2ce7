"""The evaluation text, its canonical token ids and the windows they are scored in.

**Text.** `cfg['text']` lists segments in order: a file of the running interpreter's standard library
(code) and a topic of the Language Reference shipped with it (`pydoc_data.topics`, prose under the PSF
License), built by localbench.core.texts.build_text (each cut to its `tokens` quota, recorded by sha256: a
mismatch with the pinned hash, e.g. another Python version, is stated in every row).

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
"""
from __future__ import annotations

import numpy as np


def canonical_ids(text: str, tokenizer, add_bos: bool) -> list[int]:
    """The HF tokenizer's ids of the text (no special tokens added), BOS first when the model adds one."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ([int(tokenizer.bos_token_id)] if add_bos else []) + ids


def tokenizer_adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def token_windows(ids: list[int], n_ctx: int, windows: int, bos: int | None) -> list[list[int]]:
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


def scored(window: list[int], n_ctx: int) -> tuple[int, np.ndarray]:
    """(first scored logit position, target ids) of a window: positions n_ctx/2..n_ctx-2 predict the next id."""
    first = n_ctx // 2
    return first, np.asarray(window[first + 1:n_ctx])


def scored_per_window(n_ctx: int) -> int:
    """Tokens scored per window (llama-perplexity's n_ctx - 1 - n_ctx/2)."""
    return n_ctx - 1 - n_ctx // 2
