"""The quality stage on the tiny real model (SmolLM2-135M): real forward passes through llama-perplexity,
transformers and mlx_lm on the same token ids, plus the pure functions (base-file format, Pareto, claim)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from localbench.analysis import claims
from localbench.builds import llamacpp as llamacpp_build
from localbench.quality import backends, frontier
from localbench.quality import evaluate as evaluation
from localbench.quality.logits import BaseFile, Scores, encode_logprobs
from localbench.report import quality as quality_report

ROOT = Path(__file__).resolve().parents[2]
CFG = yaml.safe_load((ROOT / "conf/quality/default.yaml").read_text())
TINY = {**CFG, "n_ctx": 256, "windows": 2, "threads": 2}     # 2 windows x 127 scored tokens (llama.cpp needs >= 100)


def build_missing() -> str:
    try:
        llamacpp_build.tool("llama-perplexity")
        llamacpp_build.gguf_converter()
    except llamacpp_build.LlamaCppMissing as exc:
        return str(exc)
    return ""


needs_build = pytest.mark.skipif(bool(build_missing()), reason=f"llama.cpp not built: {build_missing()}")


def cached(out: Path, make) -> dict:
    """An artifact row converted once (kept in .cache/test-models/quality between sessions)."""
    meta = out.with_name(out.name + ".json")
    if not meta.exists() or not out.exists():
        meta.write_text(json.dumps(make(out)))
    return json.loads(meta.read_text())


@pytest.fixture(scope="module")
def artifacts(tiny_hf_dir) -> list[dict]:
    """HF fp32 (the downloaded folder read at fp32), GGUF F16 + Q8_0 and, where mlx_lm imports, MLX bf16."""
    from localbench.artifacts.converters import gguf

    out = ROOT / ".cache" / "test-models" / "quality"
    out.mkdir(parents=True, exist_ok=True)
    hf = {"model": "smollm2", "format": "hf", "quant": "fp32", "path": str(tiny_hf_dir), "status": "ok",
          "bits_per_weight": 32.0}
    f16 = cached(out / "F16.gguf", lambda p: gguf.convert(tiny_hf_dir, p, "smollm2", "F16", {}))
    q8 = cached(out / "Q8_0.gguf",
                lambda p: gguf.convert(tiny_hf_dir, p, "smollm2", "Q8_0", {"base_f16": f16["path"]}))
    rows = [hf, f16, q8]
    try:
        from localbench.artifacts.converters import mlx as mlx_convert
        rows.append(cached(out / "mlx-bf16", lambda p: mlx_convert.convert(tiny_hf_dir, p, "smollm2", "bf16",
                                                                          {"group_size": 64})))
        mlx_convert.lift_rope_theta(Path(rows[-1]["path"]))   # the converter's own fix, also for a cached copy
    except ImportError:
        pass
    rows.append({"model": "smollm2", "format": "mlc", "quant": "q4f16_1", "path": "-", "status": "error",
                 "error": "RuntimeUnavailable: mlc_llm not installed"})
    return rows


@pytest.fixture(scope="module")
def evaluated(artifacts, tiny_hf_dir, tmp_path_factory) -> pd.DataFrame:
    rows = evaluation.evaluate(artifacts, TINY, tiny_hf_dir, tmp_path_factory.mktemp("work"))
    return evaluation.to_frame(rows).set_index(["runtime", "format", "quant"])


@needs_build
def test_every_artifact_gets_a_row_through_its_runtime(evaluated):
    ok = evaluated[evaluated["status"] == "ok"]
    assert {("torch", "hf", "fp32"), ("llamacpp", "gguf", "F16"), ("llamacpp", "gguf", "Q8_0")} <= set(ok.index)
    assert evaluated.loc[("mlc", "mlc", "q4f16_1"), "status"] == "unavailable"
    assert evaluated.loc[("ollama", "gguf", "F16, Q8_0"), "status"] == "unsupported"
    assert (ok["tokens_scored"] == 2 * 127).all() and (ok["reference"] == "hf/fp32").all()
    ref = evaluated.loc[("torch", "hf", "fp32")]
    assert ref["reason"] == "reference" and 1.5 < ref["ppl"] < 60      # a trained model on code + prose
    assert evaluated.loc[("llamacpp", "gguf", "F16"), "ids_match"]       # llama.cpp tokenizes to the same ids


@needs_build
def test_q8_kld_positive_and_small_and_above_f16(evaluated):
    q8, f16 = evaluated.loc[("llamacpp", "gguf", "Q8_0")], evaluated.loc[("llamacpp", "gguf", "F16")]
    assert 0 < q8["kld_mean"] < 0.05 and q8["kld_p99"] >= q8["kld_mean"] and q8["top1"] > 0.9
    assert abs(q8["delta_ppl"]) < 0.03
    assert q8["kld_mean"] > f16["kld_mean"]                              # 8 bits lose more than 16


@needs_build
def test_cross_runtime_hf_and_gguf_f16_agree(evaluated):
    f16 = evaluated.loc[("llamacpp", "gguf", "F16")]
    assert abs(f16["ppl"] / f16["ppl_ref"] - 1) < CFG["cross_runtime_tolerance"]
    assert f16["kld_mean"] < 2e-3 and f16["top1"] > 0.97
    check = frontier.cross_runtime(evaluated.reset_index(), CFG["cross_runtime_tolerance"])
    assert len(check) and (check["verdict"] == "agree").all()


@needs_build
def test_mlx_bf16_agrees_with_the_reference(evaluated):
    if ("mlx", "mlx", "bf16") not in evaluated.index:
        pytest.skip("mlx_lm not installed")
    mlx = evaluated.loc[("mlx", "mlx", "bf16")]
    assert mlx["status"] == "ok", mlx["reason"]
    assert abs(mlx["delta_ppl"]) < 0.02 and mlx["kld_mean"] < 0.02 and mlx["top1"] > 0.9
    # mlx_lm's own forward (bf16 compute) against the fp32 path on the same weights
    assert mlx["native_tokens"] == CFG["mlx"]["check_tokens"] and 0 < mlx["native_kld"] < 0.01
    assert mlx["native_top1"] > 0.9


@needs_build
def test_gguf_reference_written_by_llama_perplexity(artifacts, tiny_hf_dir, tmp_path):
    ggufs = [a for a in artifacts if a["format"] == "gguf"]
    frame = evaluation.to_frame(evaluation.evaluate(ggufs, {**TINY, "reference": ["gguf/F16"]}, tiny_hf_dir,
                                                    tmp_path))
    f16, q8 = (frame[(frame["runtime"] == "llamacpp") & (frame["quant"] == q)].iloc[0] for q in ("F16", "Q8_0"))
    assert f16["reason"] == "reference" and f16["kld_mean"] == 0
    assert 0 < q8["kld_mean"] < 0.05 and abs(q8["ppl"] / f16["ppl"] - 1) < 0.03


def test_synthetic_source_gives_no_rows(tmp_path):
    rows = evaluation.evaluate([{"format": "gguf", "quant": "F16", "status": "ok", "path": "x"}], TINY, tmp_path,
                               tmp_path, source="synthetic")
    assert rows == []
    assert "synthetic" in quality_report.section(evaluation.to_frame(rows), {**CFG, "source": "synthetic"})


def test_base_file_round_trip_matches_llamacpp_semantics(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(6, 101)).astype(np.float32)
    logits[0, 5] = 40.0                                    # a peaked row: most entries fall below the floor
    path = tmp_path / "base.kld"
    BaseFile.write(path, 14, 101, list(range(28)), [encode_logprobs(logits)])
    base = BaseFile(path)
    assert (base.n_ctx, base.n_vocab, base.n_chunk, base.per_window) == (14, 101, 1, 6)
    assert base.tokens == list(range(14))
    exact = logits - np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
    got = base.window(0)
    kept = exact > exact.max(axis=1, keepdims=True) - 16
    assert np.abs(got - exact)[kept].max() < 1e-3          # 16 nats over 65535 steps
    scores = Scores([], [], [])
    scores.add(logits, np.arange(6), got)                  # the reference against itself
    s = scores.summary()
    assert s["kld_mean"] < 1e-5 and s["top1"] == 1.0       # quantization noise only
    shifted = Scores([], [], [])
    shifted.add(logits * 0.5, np.arange(6), got)
    assert shifted.summary()["kld_mean"] > 0.01


def frame(**overrides) -> pd.DataFrame:
    rows = [
        {"runtime": "torch", "format": "hf", "quant": "fp32", "status": "ok", "reason": "reference", "ppl": 10.0,
         "ppl_ref": 10.0, "delta_ppl": 0.0, "kld_mean": 0.0, "kld_p99": 0.0, "top1": 1.0, "bits_per_weight": 32.0,
         "decode_tps": 5.0, "reference": "hf/fp32"},
        {"runtime": "llamacpp", "format": "gguf", "quant": "F16", "status": "ok", "reason": "", "ppl": 10.01,
         "ppl_ref": 10.0, "delta_ppl": 0.001, "kld_mean": 1e-4, "kld_p99": 1e-3, "top1": 0.99,
         "bits_per_weight": 16.0, "decode_tps": 10.0, "reference": "hf/fp32"},
        {"runtime": "llamacpp", "format": "gguf", "quant": "Q8_0", "status": "ok", "reason": "", "ppl": 10.05,
         "ppl_ref": 10.0, "delta_ppl": 0.005, "kld_mean": 2e-3, "kld_p99": 2e-2, "top1": 0.97,
         "bits_per_weight": 8.5, "decode_tps": 20.0, "reference": "hf/fp32"},
        {"runtime": "llamacpp", "format": "gguf", "quant": "Q4_K_M", "status": "ok", "reason": "", "ppl": 10.6,
         "ppl_ref": 10.0, "delta_ppl": 0.06, "kld_mean": 5e-2, "kld_p99": 0.5, "top1": 0.88,
         "bits_per_weight": 4.9, "decode_tps": 30.0, "reference": "hf/fp32"},
    ]
    out = pd.DataFrame(rows)
    for key, value in overrides.items():
        out.loc[out["quant"] == key, list(value)] = list(value.values())
    return out


def test_pareto_front():
    f = frame(Q8_0={"decode_tps": 9.0})                     # Q8_0 now slower and worse than F16: dominated
    assert f.assign(p=frontier.pareto(f["decode_tps"], f["kld_mean"])).set_index("quant")["p"].to_dict() == \
        {"fp32": True, "F16": True, "Q8_0": False, "Q4_K_M": True}


def claim_rows(quality: pd.DataFrame, cfg: dict) -> list[dict]:
    """The quality claim's rows as the registry judges them (localbench.analysis.claims)."""
    return claims.check_all(None, quality=quality, cfg=cfg).to_dict("records")


def test_claim_verdicts_follow_thresholds():
    verdicts = {r["claim"].split("/")[-1]: r["verdict"] for r in claim_rows(frame(), CFG)}
    assert verdicts == {"Q8_0": "supported", "Q4_K_M": "contradicted"}     # ΔPPL 6 %, top-1 88 %
    slower = {r["claim"].split("/")[-1]: r["verdict"] for r in claim_rows(frame(Q8_0={"decode_tps": 1.0}), CFG)}
    assert slower["Q8_0"] == "contradicted"                 # no loss, but no efficiency gain either
    assert claim_rows(frame().iloc[:2], CFG)[0]["verdict"] == "not testable here"


def test_cross_runtime_flags_a_disagreement():
    bad = frontier.cross_runtime(frame(F16={"ppl": 10.5}), 0.01)
    assert bad.set_index("check").loc["llamacpp gguf/F16 vs hf/fp32", "verdict"] == "DISAGREE"
    md = quality_report.section(frame(F16={"ppl": 10.5}).assign(text_sha256="ab" * 32, text_pinned=True, windows=4,
                                                                n_ctx=512, tokens_scored=1020, ids_match=True), CFG)
    assert "DISAGREE" in md and "Disagreement" in md and "Q4_K_M" in md and "contradicted" in md


def test_kld_output_parsing():
    out = """Mean PPL(Q)                   :  12.345678 ±   0.234567
Mean PPL(base)                :  12.300000 ±   0.230000
====== KL divergence statistics ======
Mean    KLD:   0.012345 ±   0.000456
Maximum KLD:   1.500000
99.9%   KLD:   0.900000
99.0%   KLD:   0.250000
Same top p: 95.123 ± 0.456 %"""
    got = backends.parse_kld(out)
    assert got == {"ppl": 12.345678, "ppl_base": 12.3, "kld_mean": 0.012345, "kld_max": 1.5, "kld_p99": 0.25,
                   "top1": pytest.approx(0.95123)}
    with pytest.raises(RuntimeError, match="no 'ppl'"):
        backends.parse_kld("nothing")
    assert math.isclose(backends.parse_final_ppl("Final estimate: PPL = 9.8765 +/- 0.1"), 9.8765)
