"""The quality stage on the tiny real model (SmolLM2-135M): real forward passes through llama-perplexity,
transformers and mlx_lm on the same token ids, plus the pure functions (base-file format, per-window intervals,
llama-perplexity's output, forward labels, decode intervals, Pareto, claim, report)."""
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
from localbench.quality.logits import WINDOW_COLUMNS, BaseFile, Scores, encode_logprobs, window_intervals
from localbench.report import quality as quality_report

ROOT = Path(__file__).resolve().parents[2]
CFG = yaml.safe_load((ROOT / "conf/quality/default.yaml").read_text())
# 2 windows x 127 scored tokens (llama.cpp needs >= 100); mlx_lm's own forward checked on the bf16 artifact
TINY = {**CFG, "n_ctx": 256, "windows": 2, "threads": 2, "mlx": {**CFG["mlx"], "check_quants": ["bf16"]}}


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
    # whose forward pass produced each row
    assert ref["forward"] == "transformers fp32 (cpu)"
    assert ok.loc[("llamacpp", "gguf", "Q8_0"), "forward"].startswith("llama-perplexity (llama.cpp ")
    if ("mlx", "mlx", "bf16") in ok.index:
        assert ok.loc[("mlx", "mlx", "bf16"), "forward"].startswith("transformers fp32 of MLX's dequantized weights")


@needs_build
def test_every_row_has_per_window_sums_and_intervals(evaluated):
    ok = evaluated[evaluated["status"] == "ok"]
    assert ok.loc[("torch", "hf", "fp32"), "ci_method"] == evaluation.REFERENCE
    for key, r in ok.drop(("torch", "hf", "fp32")).iterrows():
        # GGUF rows: llama-perplexity's per-chunk table parsed; Python rows: their own per-window sums
        assert r["ci_method"] == (evaluation.BOOTSTRAP_TABLE if key[1] == "gguf" else evaluation.BOOTSTRAP), key
        assert all(len(r[c]) == 2 for c in WINDOW_COLUMNS) and list(r["win_tokens"]) == [127, 127], key
        n = sum(r["win_tokens"])
        # the per-window sums add up to the row's totals (llama.cpp's running means are printed to 4-5 decimals)
        assert math.isclose(sum(r["win_nll"]) / n, math.log(r["ppl"]), abs_tol=2e-4), key
        assert math.isclose(sum(r["win_nll_ref"]) / n, math.log(r["ppl_ref"]), abs_tol=2e-4), key
        assert math.isclose(sum(r["win_kld"]) / n, r["kld_mean"], abs_tol=2e-5), key
        # top-1: whole counts against a total llama.cpp prints as a percentage to 3 decimals (up to 5e-6 off)
        assert math.isclose(sum(r["win_top1"]) / n, r["top1"], abs_tol=5e-6 * (1 + 1e-9)), key
        for metric, lo, hi in (("delta_ppl", "delta_ppl_lo", "delta_ppl_hi"), ("kld_mean", "kld_lo", "kld_hi"),
                               ("top1", "top1_lo", "top1_hi")):
            assert r[lo] <= r[metric] <= r[hi], (key, metric)


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
    # mlx_lm's own forward (bf16 compute) against the fp32 path on the same weights, on scored positions
    assert mlx["native_tokens"] == CFG["mlx"]["check_tokens"] and 0 < mlx["native_kld"] < 0.01
    assert mlx["native_top1"] > 0.9 and 0 < mlx["native_max_logit_diff"] < 3


@needs_build
def test_gguf_reference_written_by_llama_perplexity(artifacts, tiny_hf_dir, tmp_path):
    ggufs = [a for a in artifacts if a["format"] == "gguf"]
    frame = evaluation.to_frame(evaluation.evaluate(ggufs, {**TINY, "reference": ["gguf/F16"]}, tiny_hf_dir,
                                                    tmp_path))
    f16, q8 = (frame[(frame["runtime"] == "llamacpp") & (frame["quant"] == q)].iloc[0] for q in ("F16", "Q8_0"))
    assert f16["reason"] == "reference" and f16["kld_mean"] == 0
    assert 0 < q8["kld_mean"] < 0.05 and abs(q8["ppl"] / f16["ppl"] - 1) < 0.03
    # the reference's per-window NLL from llama-perplexity's running PPL
    assert math.isclose(sum(f16["win_nll"]) / (2 * 127), math.log(f16["ppl"]), abs_tol=2e-4)
    assert q8["ci_method"] == evaluation.BOOTSTRAP_TABLE and q8["kld_lo"] <= q8["kld_mean"] <= q8["kld_hi"]


def test_synthetic_source_gives_no_rows(tmp_path):
    rows = evaluation.evaluate([{"format": "gguf", "quant": "F16", "status": "ok", "path": "x"}], TINY, tmp_path,
                               tmp_path, source="synthetic")
    assert rows == []
    assert "synthetic" in quality_report.section(evaluation.to_frame(rows), {**CFG, "source": "synthetic"}).markdown()


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
    # 95 % intervals as the quality stage gives them (33 windows, 8,415 scored tokens) and decode medians of 12
    out = out.assign(delta_ppl_lo=out["delta_ppl"] - 0.004, delta_ppl_hi=out["delta_ppl"] + 0.004,
                     top1_lo=(out["top1"] - 0.01).clip(upper=1), top1_hi=(out["top1"] + 0.01).clip(upper=1),
                     kld_lo=out["kld_mean"] * 0.8, kld_hi=out["kld_mean"] * 1.2, tokens_scored=8415, windows=33,
                     decode_tps_lo=out["decode_tps"] - 1, decode_tps_hi=out["decode_tps"] + 1, decode_n=12)
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
    slower = frame(Q8_0={"decode_tps": 1.0, "decode_tps_lo": 0.5, "decode_tps_hi": 1.5})
    assert {r["claim"].split("/")[-1]: r["verdict"] for r in claim_rows(slower, CFG)}["Q8_0"] == "contradicted"
    thin = {r["claim"].split("/")[-1]: r["verdict"] for r in claim_rows(frame().assign(tokens_scored=765), CFG)}
    assert thin["Q8_0"].startswith("inconclusive")          # 765 scored tokens cannot decide "no noticeable loss"
    assert claim_rows(frame().iloc[:2], CFG)[0]["verdict"] == "not testable here"


def test_cross_runtime_flags_a_disagreement():
    bad = frontier.cross_runtime(frame(F16={"ppl": 10.5}), 0.01)
    assert bad.set_index("check").loc["llamacpp gguf/F16 vs hf/fp32", "verdict"] == "DISAGREE"
    md = quality_report.section(frame(F16={"ppl": 10.5}).assign(text_sha256="ab" * 32, text_pinned=True, n_ctx=512,
                                                                ids_match=True), CFG).markdown()
    assert "DISAGREE" in md and "Disagreement" in md and "Q4_K_M" in md and "contradicted" in md


# llama-perplexity --kl-divergence (llama.cpp of llama-cpp-python 0.3.36), SmolLM2 Q8_0 against the HF fp32 base
# file, 3 windows of 256 tokens: the per-chunk table (running means) and the statistics, as captured (trimmed)
KLD_OUTPUT = (Path(__file__).parent / "llama_perplexity_kld.txt").read_text(encoding="utf-8")
# the same tool writing the base file (F16): running PPL per chunk, then the final estimate
PPL_OUTPUT = """0.02 minutes
[1]17.8316,[2]10.5278,[3]13.9414,

0.01.354.749 I Final estimate: PPL = 13.9414 +/- 1.99362
"""


def test_kld_output_parsing():
    got = backends.parse_kld(KLD_OUTPUT)
    assert got == pytest.approx(
        {"ppl": 13.956806, "ppl_base": 13.941706, "ppl_ratio": 1.001083, "ppl_ratio_pm": 0.004985,
         "kld_mean": 0.004016, "kld_mean_pm": 0.000197, "kld_max": 0.022977, "kld_p99": 0.019172,
         "top1": 0.95801, "top1_pm": 0.01029})
    with pytest.raises(RuntimeError, match="no 'ppl'"):
        backends.parse_kld("nothing")
    assert math.isclose(backends.parse_final_ppl(PPL_OUTPUT), 13.9414)


def test_plus_minus_intervals_from_llama_perplexity():
    ci = backends.pm_intervals(backends.parse_kld(KLD_OUTPUT))
    assert ci["delta_ppl_lo"] == pytest.approx(0.001083 - 1.959964 * 0.004985, abs=1e-6)
    assert ci["delta_ppl_hi"] == pytest.approx(0.001083 + 1.959964 * 0.004985, abs=1e-6)
    assert ci["delta_ppl_lo"] < 0 < ci["delta_ppl_hi"]                # Q8_0 vs fp32: no detectable PPL change
    assert ci["kld_lo"] == pytest.approx(0.004016 - 1.959964 * 0.000197, abs=1e-7) and ci["kld_lo"] > 0
    assert ci["top1_lo"] == pytest.approx(0.95801 - 1.959964 * 0.01029, abs=1e-6)
    assert ci["top1_hi"] == pytest.approx(0.95801 + 1.959964 * 0.01029, abs=1e-6)


def test_per_window_sums_from_llama_perplexity_tables():
    win = backends.parse_kld_windows(KLD_OUTPUT, 3, 127)
    assert win["win_tokens"] == [127, 127, 127]
    assert win["win_top1"] == [121, 123, 121]                      # 95.276 % of 127, 96.063 % of 254, ...
    # window 2 from running means: 2*127*m2 - 127*m1
    assert win["win_kld"][1] == pytest.approx(127 * (2 * 0.00355 - 0.00364))
    assert win["win_nll"][1] == pytest.approx(127 * (2 * math.log(10.5061) - math.log(18.1168)))
    assert np.subtract(win["win_nll"], win["win_nll_ref"])[1] == pytest.approx(127 * (2 * -0.00199 - 0.01580))
    assert sum(win["win_kld"]) / 381 == pytest.approx(0.00402)   # the totals telescope to the last running mean
    assert backends.parse_kld_windows(KLD_OUTPUT, 4, 127) is None   # fewer rows than windows: no per-window values
    ref = backends.parse_ppl_windows(PPL_OUTPUT, 3, 127)
    assert ref["win_nll"][0] == pytest.approx(127 * math.log(17.8316))
    assert sum(ref["win_nll"]) / 381 == pytest.approx(math.log(13.9414))
    assert backends.parse_ppl_windows("[1]17.8316,", 3, 127) is None


def per_window(rng, n: int, tokens: int, extra_nll: float) -> dict:
    """Constructed per-window sums: reference NLL ~2 nats/token varying by window, the artifact's `extra_nll`
    nats/token above it plus window noise."""
    ref = rng.normal(2.0, 0.4, n) * tokens
    return {"tokens": [tokens] * n, "nll": ref + (extra_nll + rng.normal(0, 0.01, n)) * tokens, "nll_ref": ref,
            "kld": rng.uniform(0.01, 0.03, n) * tokens, "top1": rng.integers(int(0.9 * tokens), tokens, n)}


def test_window_intervals_decide_identical_and_worse():
    rng = np.random.default_rng(1)
    same = window_intervals(**per_window(rng, 12, 255, 0.0))
    assert same["delta_ppl_lo"] < 0 < same["delta_ppl_hi"]          # no loss: the interval holds 0
    assert same["delta_ppl_hi"] - same["delta_ppl_lo"] < 0.03
    worse = window_intervals(**per_window(rng, 12, 255, 0.05))       # 5 % of a nat per token worse
    assert 0.03 < worse["delta_ppl_lo"] < math.expm1(0.05) < worse["delta_ppl_hi"] < 0.07
    assert 0.01 < worse["kld_lo"] < worse["kld_hi"] < 0.03 and 0.9 <= worse["top1_lo"] < worse["top1_hi"] < 1
    identical = window_intervals([255] * 3, [500.0, 510.0, 490.0], [500.0, 510.0, 490.0], [0.0] * 3, [255] * 3)
    assert identical["delta_ppl_lo"] == identical["delta_ppl_hi"] == 0 and identical["top1_lo"] == 1
    one = window_intervals([255], [500.0], [490.0], [1.0], [250])
    assert all(math.isnan(v) for v in one.values())                   # one window: no interval
    assert math.isnan(window_intervals([255] * 3, [1.0] * 3, None, None, None)["delta_ppl_lo"])
    rounded = window_intervals([255] * 3, [500.0] * 3, [500.0] * 3, [0.0] * 3, [255] * 3, resolution=1e-5)
    assert rounded["kld_lo"] == -1e-5 and rounded["kld_hi"] == 1e-5      # printed to 5 decimals: 0 means < 1e-5
    assert rounded["delta_ppl_hi"] == pytest.approx(math.expm1(1e-5)) and rounded["top1_lo"] == 1
    with pytest.raises(ValueError, match="different numbers of tokens"):
        window_intervals([255, 100], [1.0, 1.0], [1.0, 1.0], None, None)


def test_forward_label_of_llama_perplexity(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(backends.llamacpp_build, "build_dir", lambda: tmp_path)
    (tmp_path / "bin" / "libggml-cpu.so").touch()
    assert backends.llamacpp_label() == "llama-perplexity (llama.cpp CPU)"
    (tmp_path / "bin" / "libggml-cuda.so.0").touch()
    assert backends.llamacpp_label() == "llama-perplexity (llama.cpp CUDA)"


def requests(tps: dict[str, list[float]], drifted: float | None = None) -> pd.DataFrame:
    """Warm single-stream rows of one cell: per quant its decode tok/s, 4 to a window."""
    rows = [{"runtime": "llamacpp", "quant": q, "status": "ok", "phase": "warm", "concurrency": 1,
             "cache_reuse": False, "workload": "unique", "prompt_tokens": 32, "transport": "inprocess",
             "max_tokens": 32, "decode_tps": v, "window": f"w{i // 4}", "drift_flag": False}
            for q, values in tps.items() for i, v in enumerate(values)]
    if drifted is not None:
        rows.append({**rows[0], "decode_tps": drifted, "window": "w9", "drift_flag": True})
    return pd.DataFrame(rows)


def test_decode_interval_in_the_frontier():
    rng = np.random.default_rng(0)
    q8, f16 = list(rng.normal(20, 0.5, 12)), list(rng.normal(10, 0.3, 12))
    speed = frontier.decode_speed(requests({"Q8_0": q8, "F16": f16}, drifted=500.0), CFG["speed"]).set_index("quant")
    assert speed.loc["Q8_0", "decode_tps"] == pytest.approx(np.median(q8))   # the median; the drifted row left out
    assert speed.loc["Q8_0", "decode_n"] == 12
    assert speed.loc["Q8_0", "decode_tps_lo"] < np.median(q8) < speed.loc["Q8_0", "decode_tps_hi"] < 21.5
    assert speed.loc["F16", "decode_tps_hi"] < speed.loc["Q8_0", "decode_tps_lo"]   # 10 vs 20 tok/s: apart
    quality = frame()[["runtime", "format", "quant", "status", "reason", "ppl", "kld_mean"]]
    arts = pd.DataFrame({"format": ["gguf"] * 3, "quant": ["F16", "Q8_0", "Q4_K_M"], "size_bytes": [2**20] * 3,
                         "bits_per_weight": [16.0, 8.5, 4.9], "convert_s": [12.0, 2.0, 3.0]})
    table = frontier.frontier(quality, arts, requests({"Q8_0": q8, "F16": f16}), CFG).set_index("quant")
    assert {"decode_tps", "decode_tps_lo", "decode_tps_hi", "decode_n"} <= set(table.columns)
    assert table.loc["Q4_K_M", "convert_s"] == 3.0            # conversion time beside quality and speed
    assert table.loc["Q8_0", "decode_tps_lo"] == speed.loc["Q8_0", "decode_tps_lo"]
    assert math.isnan(table.loc["Q4_K_M", "decode_tps_lo"])             # not measured


def test_report_prints_intervals_tokens_and_forward():
    f = frame().assign(text_sha256="ab" * 32, text_pinned=True, windows=3, n_ctx=512, tokens_scored=765,
                       ids_match=True, ci_method=evaluation.BOOTSTRAP, forward="llama-perplexity (llama.cpp CPU)",
                       delta_ppl_lo=0.001, delta_ppl_hi=0.009, kld_lo=1e-3, kld_hi=3e-3, top1_lo=0.96, top1_hi=0.98,
                       decode_tps_lo=19.0, decode_tps_hi=21.0, decode_n=12)
    md = quality_report.section(f, CFG).markdown()
    assert "+0.5 [0.1, 0.9]" in md                           # Q8_0's ΔPPL in %, with its interval
    assert "0.002 [0.001, 0.003]" in md and "97 [96, 98]" in md and "20 [19, 21] (n=12)" in md
    assert "llama-perplexity (llama.cpp CPU)" in md and "765 tokens in 3 windows" in md
    assert "fewer than the 8,192" in md and "`paper` and `long`" in md
    enough = quality_report.section(f.assign(windows=33, tokens_scored=8415), CFG).markdown()
    assert "8,415 tokens in 33 windows, at least the 8,192" in enough and "fewer than" not in enough
