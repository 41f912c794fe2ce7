"""Deterministic prompt sets with exact token counts under the model's tokenizer.

Types (the paper's): `unique` (random whole-word tokens, low repetition), `prefix` (a long shared prefix
plus a varying suffix), `code` (real code from the Python standard library's sources) and `chat`
(multi-turn sessions whose context grows turn by turn, rendered with the model's chat template).
Prompts are built from token ids and kept only if decode -> encode gives the same ids back.
Every prompt of a workload that does not ask for cache reuse (unique, code, and the warm-up prompt) starts
with a whole-word token no other prompt starts with, so no runtime's prefix cache can hit it by accident;
the harness warms a session up on the `warmup` prompt, which is outside every plan.
"""
from __future__ import annotations

import logging
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HEADERS = {
    "unique": "Summarize the following text.\n\n",
    "prefix": "Summarize the following text.\n\n",
    "code": "Explain what the following Python code does.\n\n",
    "chat": "",
    "warmup": "Summarize the following text.\n\n",
}
WARMUP_MAX = 64          # the warm-up prompt: the shortest length, at most this many tokens (long profiles)
NO_SHARED_START = ("unique", "code", "warmup")   # workloads whose prompts must not share a first token
WORD = re.compile(r"^[a-z]{3,10}$")
SPACE_MARKS = ("Ġ", "▁")   # how byte-level BPE and SentencePiece vocabularies spell a leading space


class PromptError(ValueError):
    """A prompt set cannot be built as configured; the message names the setting to change."""


@dataclass
class Prompt:
    workload: str
    prompt_id: str
    target_tokens: int
    ids: list[int]
    text: str
    prefix_tokens: int = 0
    session: int = 0
    turn: int = 0
    chat: bool = False
    messages: list[dict] | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


def encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def word_vocab(tok) -> list[int]:
    """Token ids that decode to ' word' (a space and 3-10 lowercase letters): they re-encode stably."""
    ids = []
    for token, idx in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
        if token[:1] not in SPACE_MARKS or not WORD.match(token[1:]):
            continue
        text = tok.decode([idx])
        if text.startswith(" ") and encode(tok, text) == [idx]:
            ids.append(idx)
    if len(ids) < 100:
        raise PromptError("the tokenizer has too few whole-word tokens for `unique` prompts")
    return ids


def round_trips(tok, ids: list[int]) -> bool:
    return encode(tok, tok.decode(ids)) == ids


def words(rng: random.Random, vocab: list[int], n: int) -> list[int]:
    return [rng.choice(vocab) for _ in range(n)]


def exact(tok, header: list[int], body: list[int], n: int) -> list[int]:
    """header + body cut to exactly n tokens that survive a decode/encode round trip."""
    need = n - len(header)
    if need <= 0:
        raise PromptError(f"length {n} is shorter than the prompt header ({len(header)} tokens); raise it")
    for start in range(0, min(64, max(len(body) - need + 1, 1))):
        ids = header + body[start:start + need]
        if len(ids) == n and round_trips(tok, ids):
            return ids
    raise PromptError(f"no {n}-token prompt round-trips through the tokenizer")


def code_corpus_ids(tok, rng: random.Random, n: int) -> list[int]:
    """Token ids of real code: standard-library modules in a seeded order, at least n tokens."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    rng.shuffle(files)
    ids: list[int] = []
    for path in files:
        ids += encode(tok, path.read_text(errors="replace"))
        if len(ids) >= n + 64:
            break
    return ids


class FirstTokens:
    """Hands out whole-word tokens, each once: the distinct first token of every no-reuse prompt."""

    def __init__(self, vocab: list[int], seed: int):
        self.free = list(vocab)
        random.Random(f"{seed}-first").shuffle(self.free)

    def take(self) -> list[int]:
        if not self.free:
            raise PromptError("more prompts than distinct first tokens; lower workload.per_length")
        return [self.free.pop()]


def build_prompts(tok, types: list[str], lengths: list[int], per_length: int, seed: int, prefix_fraction: float,
          chat_turns: int, max_context: int, prefix_prompts: int = 2, window_warmup_max_tokens: int = 0) -> list[Prompt]:
    """Every prompt of the set (per type, per length, `per_length` distinct prompts), then `warmup` prompts
    outside every plan: one of the shortest length (at most WARMUP_MAX tokens), the session's, and one per
    length up to `window_warmup_max_tokens`, a measurement window's at that length. `prefix` gets
    `prefix_prompts` siblings per length (one shared prefix, distinct suffixes): the first primes a cache,
    the others can hit it; `chat` gets `per_length` sessions."""
    usable = [n for n in lengths if n <= max_context]
    for n in sorted(set(lengths) - set(usable)):
        log.warning("prompt length %d exceeds the model's usable context (%d): skipped", n, max_context)
    vocab = word_vocab(tok)
    first = FirstTokens(vocab, seed)
    prompts: list[Prompt] = []
    allowed = sorted(set(HEADERS) - {"warmup"})
    for kind in types:
        if kind not in allowed:
            raise PromptError(f"workload type {kind!r} is not one of {allowed}; fix workload.types")
    warm = sorted({min(min(usable), WARMUP_MAX), *(n for n in usable if n <= window_warmup_max_tokens)})
    for kind in [*types, "warmup"]:
        for n in (usable if kind != "warmup" else warm):
            header = (first.take() if kind in NO_SHARED_START else []) + encode(tok, HEADERS[kind])
            rng = random.Random(f"{seed}-{kind}-{n}")
            if kind == "chat":
                prompts += chat_sessions(tok, rng, vocab, n, per_length, chat_turns)
                continue
            shared = words(rng, vocab, int(n * prefix_fraction)) if kind == "prefix" else []
            corpus = code_corpus_ids(tok, rng, n) if kind == "code" else []
            count = 1 if kind == "warmup" else prefix_prompts if kind == "prefix" else per_length
            for i in range(count):
                if i and kind in NO_SHARED_START:
                    header = first.take() + header[1:]
                if kind == "code":
                    offset = rng.randrange(0, max(len(corpus) - n, 1))
                    ids = exact(tok, header, corpus[offset:], n)
                else:
                    ids = exact(tok, header + shared, words(rng, vocab, n), n)
                prompts.append(Prompt(kind, f"{kind}-{n}-{i}", n, ids, tok.decode(ids),
                                      prefix_tokens=len(header) + len(shared)))
    return prompts


def can_hit(prompt_id: str) -> bool:
    """A cache-reuse prompt that follows one it can reuse (by the ids build_prompts() and chat_sessions() give): a prefix
    prompt after its set's first (`prefix-N-0` primes it), a chat turn after the first (`-t0`)."""
    return not re.search(r"-t?0$", str(prompt_id))


def chat_sessions(tok, rng: random.Random, vocab: list[int], n: int, sessions: int, turns: int) -> list[Prompt]:
    """Multi-turn chats reaching about n tokens at the last turn; each turn's prompt is the whole history."""
    per_turn = max(n // max(turns, 1) - 16, 8)
    prompts = []
    for s in range(sessions):
        messages: list[dict] = []
        for t in range(turns):
            messages.append({"role": "user", "content": tok.decode(words(rng, vocab, per_turn))})
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
            prompts.append(Prompt("chat", f"chat-{n}-{s}-t{t}", n, ids, tok.decode(ids), session=s, turn=t,
                                  chat=True, messages=[dict(m) for m in messages]))
            messages.append({"role": "assistant", "content": tok.decode(words(rng, vocab, 16))})
    return prompts
