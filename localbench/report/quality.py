"""The report's quantization-quality section: quality beside size and speed, each number with its 95 % interval
and the scored token count, the cross-runtime check, the figure (localbench.report.quality_figure) and the
claim's rows (localbench.analysis.claims)."""
from __future__ import annotations

import math

import pandas as pd

from localbench.analysis import claims
from localbench.core.stats import Estimate
from localbench.quality.evaluate import SYNTHETIC_REASON
from localbench.quality.frontier import cross_runtime
from localbench.quality.text import scored_per_window
from localbench.report.sections import Figure, Section

def with_interval(value, lo, hi, scale: float = 1.0, signed: bool = False) -> str:
    """'value [lo, hi]' (scaled, e.g. to %); '–' without a value, '[–]' without an interval."""
    if value is None or value != value:
        return "–"
    v = f"{value * scale:+.3g}" if signed else f"{value * scale:.3g}"
    ci = f"[{lo * scale:.3g}, {hi * scale:.3g}]" if lo is not None and lo == lo and hi == hi else "[–]"
    return f"{v} {ci}"


def decode_cell(r) -> str:
    """Decode tok/s as 'median [lo, hi] (n=..)' (localbench.core.stats.Estimate), '–' where not measured."""
    n = r.get("decode_n")
    if n is None or n != n or not n:
        return "–"
    return Estimate(r["decode_tps"], r.get("decode_tps_lo", math.nan), r.get("decode_tps_hi", math.nan), int(n)).text()


def budget_note(ok: pd.DataFrame, cfg: dict) -> str:
    """How many tokens were scored, in how many windows, and whether that is enough to decide the claim."""
    need = int((cfg.get("claim") or {}).get("min_tokens", claims.MIN_TOKENS_SCORED))
    tokens = int(ok["tokens_scored"].max()) if len(ok) else 0
    windows, n_ctx = int(ok["windows"].max()) if len(ok) else 0, int(ok["n_ctx"].max()) if len(ok) else 0
    enough = (f"at least the {need:,} the claim's interval needs" if tokens >= need else
              f"**fewer than the {need:,} scored tokens the claim's interval needs** (the default profile keeps the "
              f"quality stage to ~2 minutes of a 20-minute `dvc repro` on 2 CPU cores): the intervals are wide and a "
              f"bootstrap over {windows} windows is little more than their range, so a verdict on this evidence is "
              f"provisional. The `paper` and `long` profiles (conf/experiment/) score "
              f"{math.ceil(need / scored_per_window(n_ctx)) if n_ctx else '?'} windows or more, ≥ {need:,} tokens "
              f"(`dvc exp run -S experiment=long`)")
    return f"Scored: {tokens:,} tokens in {windows} windows, {enough}."


def section(frame: pd.DataFrame | None, cfg: dict) -> Section:
    """The report's quality section: the quality-size-speed table, the cross-runtime check, the figure, the claim
    rows. `frame` is the quality frontier (data/quality_frontier.parquet, None when absent); `cfg` is the quality
    params block (+ `source`: the model source, `figure_png`: the figure's PNG path, None without one)."""
    s = Section("quality", "Quantization quality beside size and speed")
    if frame is None or frame.empty:
        why = SYNTHETIC_REASON if cfg.get("source") == "synthetic" else "no artifact was evaluated"
        s.blocks.append(f"\n_No quality rows: {why}._\n")
        return s
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
    forwards = frame["forward"].dropna().astype(str) if "forward" in frame else pd.Series(dtype=str)
    mlx_note = (" (the mlx rows here are transformers fp32 passes of the MLX artifacts' dequantized weights; mlx_lm's "
                "own forward is checked against them on scored positions in the cross-runtime check)"
                if forwards.str.contains("MLX's dequantized").any() else "")
    intro = (f"Every artifact evaluated on one fixed text (sha256 `{first['text_sha256'][:12]}`: a standard-library "
             f"source file and a Language Reference topic of the running Python, token quotas in conf/quality){pinned} "
             f"with the runtime that serves its format, in {int(first['windows'])} windows of {int(first['n_ctx'])} "
             f"tokens, the second half of each scored. "
             f"All runtimes get the same token ids (the HF tokenizer's; {ids_note or 'no GGUF'}). Reference: "
             f"{ref_text}; ΔPPL = PPL / PPL(reference) − 1; KLD = KL(reference ‖ artifact) per token (llama.cpp's "
             f"definition: reference log-probs below −16 ignored), mean and p99; top-1 = same most likely token. "
             f"Each value is followed by its 95 % interval `[lo, hi]` (column `CI`: a bootstrap over the scored "
             f"windows, which resamples windows because a window's tokens are not independent; llama-perplexity's own "
             f"± where its per-window table is missing, which takes tokens as independent and is narrower). "
             f"{budget_note(ok, cfg)} `forward`: whose forward pass produced the logits{mlx_note}. "
             f"Decode tok/s: warm single-stream median [95 % interval] (n) in the cell "
             f"{speed.get('workload')}/{speed.get('prompt_tokens')} prompt tokens ({speed.get('transport')}), rows of "
             f"drifted windows left out. Pareto: no other artifact is both faster and closer.\n")
    show = pd.DataFrame({
        "runtime": frame["runtime"], "forward": frame.get("forward"), "format": frame["format"],
        "quant": frame["quant"], "status": frame["status"], "size_mib": frame.get("size_mib"),
        "bits_per_weight": frame.get("bits_per_weight"), "convert_s": frame.get("convert_s"), "ppl": frame["ppl"],
        "ΔPPL % [95 % CI]": [with_interval(r.get("delta_ppl"), r.get("delta_ppl_lo"), r.get("delta_ppl_hi"), 100, True)
                              for _, r in frame.iterrows()],
        "KLD mean [95 % CI]": [with_interval(r.get("kld_mean"), r.get("kld_lo"), r.get("kld_hi"))
                               for _, r in frame.iterrows()],
        "kld_p99": frame["kld_p99"],
        "top-1 % [95 % CI]": [with_interval(r.get("top1"), r.get("top1_lo"), r.get("top1_hi"), 100)
                              for _, r in frame.iterrows()],
        "tokens": frame.get("tokens_scored"), "CI": frame.get("ci_method"),
        "decode tok/s [95 % CI] (n)": [decode_cell(r) for _, r in frame.iterrows()],
        "pareto": frame.get("pareto"), "reason": frame["reason"]})
    show = show[[c for c in show if show[c].notna().any()] if len(show) else list(show)]
    tol = float(cfg.get("cross_runtime_tolerance", 0.02))
    cross = cross_runtime(frame, tol)
    cross_text = (cross if len(cross) else "_Only one runtime evaluated a full-precision artifact: not "
                  "testable here._\n")
    flag = ("**Disagreement: a conversion or a runtime is wrong.**\n" if (cross["verdict"] == "DISAGREE").any()
            else "")
    fig = cfg.get("figure_png")
    claim_rows = claims.check_all(None, quality=frame, cfg=cfg)[["claim", "verdict", "effect", "evidence"]]
    parts = [intro, show,
             f"\n### Cross-runtime check (same weights, PPL within {tol:.1%} of the reference)\n", cross_text, flag,
             Figure("decode tok/s vs KL divergence", fig) if fig else "",
             f"\n### Claim: {claims.QUALITY_CLAIM.lower()}\n", claim_rows]
    s.blocks += [p for p in parts if not isinstance(p, str) or p]
    return s
