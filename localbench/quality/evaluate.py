"""Quantization quality of every artifact: perplexity, KL divergence and top-1 agreement, one row each.

Every artifact is evaluated on ONE fixed evaluation text (localbench.quality.text: the text, its canonical
token ids, the scored windows), through the forward pass of the runtime that serves its format
(localbench.quality.backends): GGUF with llama.cpp's `llama-perplexity` (`--kl-divergence-base FILE
--kl-divergence`), MLX with mlx_lm's model forward, HF folders with transformers. MLC and Ollama expose no
prompt logits through the APIs this project drives: their rows say so (unavailable / unsupported, with the
reason).

**Reference.** The first available artifact of `cfg['reference']` (default HF fp32: fp32 weights and fp32
compute in transformers, the highest precision here); one reference for all runtimes. Its next-token
log-probabilities are stored in llama.cpp's KL base format (localbench.quality.logits): llama-perplexity
reads it for GGUF rows, Python computes the same statistics for MLX/HF rows with llama.cpp's formulas.
When the reference is a GGUF, llama-perplexity writes that file itself (`--kl-divergence-base` without
`--kl-divergence`).

**Uncertainty.** Each row keeps its per-window sums (localbench.quality.logits.WINDOW_COLUMNS) and 95 %
intervals of ΔPPL, mean KL and top-1 (`delta_ppl_lo`/`_hi`, `kld_lo`/`_hi`, `top1_lo`/`_hi`), and says how they
were made (`ci_method`): a bootstrap over scored windows (Python rows; GGUF rows from llama-perplexity's
per-chunk table of running means, bounds widened by its printed rounding), else llama-perplexity's own ± (tokens
as independent units, normal). `forward` says whose forward
pass produced the logits (on MLX's CPU backend the "mlx" rows are transformers fp32 passes of MLX's weights).
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path

import pandas as pd

from localbench.config.registry import FORMAT_RUNTIME
from localbench.quality.backends import (TABLE_RESOLUTION, gguf_vocab, hf_forward, llama_perplexity, llamacpp_ids,
                                         llamacpp_label, llamacpp_version, mlx_forward, mlx_in_torch_forward, mlx_path,
                                         native_check, parse_final_ppl, parse_kld, parse_kld_windows,
                                         parse_ppl_windows, pm_intervals)
from localbench.quality.logits import WINDOW_COLUMNS, BaseFile, Scores, encode_logprobs, window_intervals
from localbench.core.texts import build_text
from localbench.quality.text import canonical_ids, scored, scored_per_window, token_windows, tokenizer_adds_bos

log = logging.getLogger("quality")

INTERVALS = ["delta_ppl_lo", "delta_ppl_hi", "kld_lo", "kld_hi", "top1_lo", "top1_hi"]
COLUMNS = ["model", "format", "quant", "runtime", "forward", "runtime_version", "status", "reason", "reference",
           "n_ctx", "windows", "tokens_scored", "ppl", "ppl_ref", "delta_ppl", "kld_mean", "kld_p99", "kld_max",
           "top1", *INTERVALS, "ci_method", "ids_match", "native_tokens", "native_kld", "native_top1",
           "native_max_logit_diff", "eval_s", "text_sha256", "text_pinned", *WINDOW_COLUMNS]
FLOATS = ["ppl", "ppl_ref", "delta_ppl", "kld_mean", "kld_p99", "kld_max", "top1", *INTERVALS, "native_kld",
          "native_top1", "native_max_logit_diff", "eval_s"]
BOOTSTRAP = "bootstrap over scored windows"
BOOTSTRAP_TABLE = "bootstrap over scored windows (llama-perplexity's per-chunk running means)"
PER_TOKEN = "llama-perplexity ± (tokens as independent units, normal)"
REFERENCE = "reference (by definition)"
SYNTHETIC_REASON = ("the model source is synthetic (random weights): perplexity and KL divergence of random "
                    "weights say nothing about quantization quality, so the quality stage writes no rows")


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
    wins = token_windows(ids, n_ctx, n_win, bos)
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

    per_window = scored_per_window(n_ctx)

    def python_eval(art: dict, reference: BaseFile | None) -> dict:
        t0 = time.perf_counter()
        check = 0
        if art["format"] == "hf":
            forward = hf_forward(art["path"], art["quant"], n_ctx, threads)
        elif mlx_path(mlx_cfg) == "mlx":
            forward = mlx_forward(art["path"], n_ctx)
        else:
            forward = mlx_in_torch_forward(art["path"], source_dir, n_ctx, threads)
            if art["quant"] in (mlx_cfg.get("check_quants") or []):
                check = min(int(mlx_cfg.get("check_tokens", 32)), per_window)
        scores, ref_rows, checked = Scores([], [], []), [], None
        for w, win in enumerate(wins):
            logits = forward.logits(win)
            first, targets = scored(win, n_ctx)
            scores.add(logits, targets, reference.window(w) if reference else None)
            if reference is None:
                ref_rows.append(encode_logprobs(logits))
            if w == 0 and check:
                checked = logits[:check].copy()        # the first scored positions, for mlx_lm's own forward
        if reference is None:
            BaseFile.write(base, n_ctx, int(logits.shape[1]), ids, ref_rows)
        extra = native_check(art["path"], checked, wins[0], first) if checked is not None else {}
        return {"runtime_version": forward.version, "forward": forward.label, "ci_method": BOOTSTRAP,
                "eval_s": time.perf_counter() - t0, **scores.summary(), **extra}

    # 1. the reference: its log-probs become llama.cpp's base file
    if ref is not None:
        try:
            if ref["format"] == "gguf":
                t0 = time.perf_counter()
                out = llama_perplexity(ref["path"], text_file, base, n_ctx, n_win, threads, write_base=True)
                values = {"ppl": parse_final_ppl(out), "runtime_version": llamacpp_version(),
                          "forward": llamacpp_label(), "tokens_scored": n_win * per_window,
                          "eval_s": time.perf_counter() - t0, **(parse_ppl_windows(out, n_win, per_window) or {})}
                if BaseFile(base).tokens != ids[:n_ctx * n_win]:
                    raise RuntimeError("llama.cpp tokenized the evaluation text differently from the HF tokenizer; "
                                       "pick a Python reference (quality.reference)")
            elif ref["format"] in ("hf", "mlx"):
                values = python_eval(ref, None)
            else:
                raise ValueError(f"format {ref['format']} cannot be the reference")
            ref_ok = True
            values |= {"kld_mean": 0.0, "kld_p99": 0.0, "kld_max": 0.0, "top1": 1.0, "ci_method": REFERENCE,
                       "delta_ppl_lo": 0.0, "delta_ppl_hi": 0.0, "kld_lo": 0.0, "kld_hi": 0.0, "top1_lo": 1.0,
                       "top1_hi": 1.0}     # by definition
            if values.get("win_nll") is not None:
                n = len(values["win_nll"])
                values |= {"win_nll_ref": values["win_nll"], "win_kld": [0.0] * n, "win_top1": values["win_tokens"]}
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
                found = parse_kld(out)
                windows = parse_kld_windows(out, n_win, per_window) if n_win > 1 else None
                values = {k: found[k] for k in ("ppl", "kld_mean", "kld_p99", "kld_max", "top1")}
                values |= ({**windows, "ci_method": BOOTSTRAP_TABLE} if windows else
                           {**pm_intervals(found), "ci_method": PER_TOKEN})
                values |= {"runtime_version": llamacpp_version(), "forward": llamacpp_label(),
                           "eval_s": time.perf_counter() - t0, "tokens_scored": n_win * per_window}
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
    ref_row = rows.get((ref["format"], ref["quant"]), {}) if ref else {}
    for r in ordered:
        r["ppl_ref"] = ref_row.get("ppl")
        r["delta_ppl"] = (r["ppl"] / r["ppl_ref"] - 1) if r["ppl"] is not None and r["ppl_ref"] else None
        if r["ci_method"] == BOOTSTRAP:              # Python rows: the reference's NLL on the same windows
            r["win_nll_ref"] = ref_row.get("win_nll")
            r |= window_intervals(*(r[c] for c in WINDOW_COLUMNS))
        elif r["ci_method"] == BOOTSTRAP_TABLE:
            r |= window_intervals(*(r[c] for c in WINDOW_COLUMNS), resolution=TABLE_RESOLUTION)
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
    for col in FLOATS:
        frame[col] = frame[col].astype(float)
    return frame


def metrics(frame: pd.DataFrame) -> dict:
    """metrics/quality.json: per format/quant the headline numbers (dvc metrics / exp show)."""
    out: dict = {}
    for r in frame[(frame["status"] == "ok")].itertuples():
        out.setdefault(r.format, {})[r.quant] = {
            k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6))
            for k, v in (("ppl", r.ppl), ("delta_ppl", r.delta_ppl), ("kld_mean", r.kld_mean),
                         ("kld_p99", r.kld_p99), ("top1", r.top1), *((c, getattr(r, c)) for c in INTERVALS))}
    refs = frame["reference"].dropna().unique()
    return {"reference": refs[0] if len(refs) else None, "artifacts": out}


def evaluate_artifacts(cfg: dict, artifacts_file: Path, source_dir: Path,
                       scratch: Path) -> tuple[pd.DataFrame, dict]:
    """The `quality` stage: every artifact of `artifacts_file` (data/artifacts.parquet) evaluated against the
    model source in `source_dir` (its provenance.json says whether it is synthetic), in a temporary folder under
    `scratch` (the base file: ~150 MB a window, deleted after). Returns the frame (data/quality.parquet) and the
    summary (metrics/quality.json)."""
    provenance = source_dir / "provenance.json"
    source = json.loads(provenance.read_text()).get("source", "") if provenance.exists() else ""
    artifacts = pd.read_parquet(artifacts_file).to_dict("records")
    scratch.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quality-", dir=scratch) as work:
        rows = evaluate(artifacts, cfg, source_dir, Path(work), source)
    frame = to_frame(rows)
    return frame, metrics(frame) | ({"skipped": SYNTHETIC_REASON} if source == "synthetic" else {})
