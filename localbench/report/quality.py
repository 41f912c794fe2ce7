"""The report's quantization-quality section: quality beside size and speed, the cross-runtime check, the
figure (localbench.report.quality_figure) and the claim's rows (localbench.analysis.claims)."""
from __future__ import annotations

import pandas as pd

from localbench.analysis import claims
from localbench.core.markdown import table
from localbench.quality.evaluate import SYNTHETIC_REASON
from localbench.quality.frontier import cross_runtime


def forward_of(r) -> str:
    """Whose forward pass produced a row's logits."""
    version = str(r.get("runtime_version") or "")
    if r.get("status") != "ok":
        return ""
    if "weights of the MLX artifact" in version:
        return "transformers (MLX weights, fp32)"
    return {"gguf": "llama-perplexity", "hf": "transformers", "mlx": "mlx_lm"}.get(r["format"], "")


def section(frame: pd.DataFrame | None, cfg: dict) -> str:
    """The report's Markdown: the quality-size-speed table, the cross-runtime check, the figure, the claim rows.
    `frame` is the quality frontier (data/quality_frontier.parquet, None when absent); `cfg` is the quality
    params block (+ `source`: the model source, `figure`: the figure's path relative to the report)."""
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
    cols = ["runtime", "forward", "format", "quant", "status", "size_mib", "bits_per_weight", "ppl", "delta_ppl_pct",
            "kld_mean", "kld_p99", "top1_pct", "decode_tps", "pareto", "reason"]
    show = show[[c for c in cols if c in show]]
    tol = float(cfg.get("cross_runtime_tolerance", 0.02))
    cross = cross_runtime(frame, tol)
    cross_text = (table(cross) if len(cross) else "_Only one runtime evaluated a full-precision artifact: not "
                  "testable here._\n")
    flag = ("**Disagreement: a conversion or a runtime is wrong.**\n" if (cross["verdict"] == "DISAGREE").any()
            else "")
    fig = cfg.get("figure")
    claim_rows = claims.check_all(None, quality=frame, cfg=cfg)[["claim", "verdict", "evidence"]]
    parts = [head, intro, table(show),
             f"\n### Cross-runtime check (same weights, PPL within {tol:.1%} of the reference)\n", cross_text, flag,
             (f"\n![decode tok/s vs KL divergence]({fig})\n" if fig else ""),
             f"\n### Claim: {claims.QUALITY_CLAIM.lower()}\n", table(claim_rows)]
    return "\n".join(p for p in parts if p)
