"""DVC stage `prompts`: data/prompts.parquet, exact-length prompt sets under the model's tokenizer."""
import json
import sys
from pathlib import Path

import pandas as pd
from transformers import AutoConfig, AutoTokenizer

import localbench  # noqa: F401 - first: the private environment (localbench.config.privacy) before transformers
from localbench.config.params import params, setup_logging
from localbench.workload.prompts import PromptError, build_prompts

SOURCE = Path("models/source")


def main() -> None:
    setup_logging()
    wl = params("workload")["workload"]
    tok = AutoTokenizer.from_pretrained(SOURCE)
    # workload.max_context: the usable context where the runtimes extend it (YaRN rope scaling past 32k)
    context = wl.get("max_context") or AutoConfig.from_pretrained(SOURCE).max_position_embeddings
    slices = wl.get("slices") or []      # workload.slices: extra types x lengths (localbench.workload.prompts builds all)
    types = list(dict.fromkeys([*wl["types"], *(t for part in slices for t in part["types"])]))
    lengths = sorted({*wl["lengths"], *(n for part in slices for n in part["lengths"])})
    try:
        prompts = build_prompts(tok, types, lengths, wl["per_length"], wl["seed"], wl["prefix_fraction"],
                        wl["chat_turns"], max_context=context - wl["max_tokens"],
                        prefix_prompts=int(wl.get("prefix_prompts") or 2),
                        window_warmup_max_tokens=int(wl.get("window_warmup_max_tokens") or 0))
    except PromptError as exc:
        sys.exit(f"prompts: {exc}")
    frame = pd.DataFrame([{**vars(p), "n_tokens": p.n_tokens, "messages": json.dumps(p.messages)}
                          for p in prompts])
    Path("data").mkdir(exist_ok=True)
    frame.to_parquet("data/prompts.parquet", index=False)


if __name__ == "__main__":
    main()
