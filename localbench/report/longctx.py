"""The report's "Long context and caching" section: the tables of localbench.analysis.longctx and the figures of
localbench.report.figures (longctx_*), scaled to what the run measured."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from localbench.analysis.longctx import bounded, load_config, not_run, per_length, reuse, turns
from localbench.core.hardware import kv_bytes_per_token
from localbench.core.markdown import table
from localbench.report.sections import Figure, Section


def section(rows: pd.DataFrame, extras: list[dict], figures: list[Path], config: dict | None = None) -> Section:
    """The report's "Long context and caching" section: tables and figures, scaled to what the run measured."""
    config = config if config is not None else load_config()
    long_rows = per_length(rows, config, min_tokens=1024)
    parts: list = []
    if config:
        per_tok = kv_bytes_per_token(config, 2)
        parts.append(f"Theoretical KV cache of this model: {config['num_hidden_layers']} layers × "
                     f"{config.get('num_key_value_heads')} KV heads × "
                     f"{int(config.get('head_dim') or config['hidden_size'] // config['num_attention_heads'])} "
                     f"head dim × 2 (K, V) × 2 bytes (f16) = {per_tok / 1024:g} KiB per token "
                     f"({per_tok * 32768 / 2**20:,.0f} MiB at 32,768 tokens; fp32 doubles it). llama.cpp allocates "
                     "its KV buffer for all n_ctx cells at load; torch and MLX grow theirs with the context.\n")
    parts.append("### Cost per context length (cold unique prompts, ≥ 1k tokens)\n")
    parts.append("TTFT is the cold prefill; decode tok/s is the output after a prompt of that length; memory is "
                 "the peak RSS (servers: process tree; in-process: above the pre-load baseline).\n\n"
                 + table(long_rows))
    missing = not_run(rows)
    if not missing.empty:
        parts.append("### Cells not measured (time budget, timeout or failure; never dropped)\n\n" + table(missing))
    parts.append("### Cache reuse: the same prompts with each runtime's reuse on and off\n")
    parts.append("Mechanism per runtime: Table 2 below. Prefix-heavy prompts share a prefix of "
                 "`workload.prefix_fraction` of their tokens, with distinct suffixes; chat sessions append a reply and "
                 "a new user message each turn. The same prompts run first with reuse on in order, so a reuse request "
                 "finds what the request before it left (the first of a set: whatever an unrelated prompt left, "
                 "i.e. nothing it can use), then again with reuse off (each request starts from an empty cache). "
                 "Tokens reused and hit rate are what the runtime reports; latency cut = 1 - TTFT on / TTFT off on "
                 "the same prompts; speedup after the first = TTFT off / on over the prompts after their set's first "
                 "(chat: the turns after the first), the ones a cache can serve.\n\n" + table(reuse(rows)))
    chat = turns(rows)
    if not chat.empty:
        parts.append("### Multi-turn chat: TTFT per turn\n\n" + table(chat))
    bound = bounded(rows)
    if not bound.empty:
        parts.append("### Bounded KV (MLX rotating window)\n\n" + table(bound))
    parts += [Figure(p.stem, p) for p in figures if p.stem.startswith("longctx_")]
    return Section("longctx", "Long context and caching", parts)
