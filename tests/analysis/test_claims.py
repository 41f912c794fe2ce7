"""The study's claims as statistical decisions: each decision rule supported, contradicted and inconclusive on
constructed rows (thin evidence reads inconclusive), runtimes compared only within a matched cell of one transport
and precision class, drift-flagged rows left out, a bug in a claim shown as the verdict `error`."""
import json
import logging

import numpy as np
import pandas as pd
import pytest
from fakes import frame, request_row, reuse_rows

from localbench.analysis import claims
from localbench.analysis.cells import precision


def spread(center: float, n: int = 6, rel: float = 0.02) -> list[float]:
    """n values evenly spread ± rel around center (a quiet cell)."""
    return list(np.linspace(center * (1 - rel), center * (1 + rel), n))


def requests(metric: str, values: list[float], **kw) -> list[dict]:
    """One request row per value of `metric` (llama.cpp in-process Q4_K_M, unique 1024 -> 32 unless `kw`), spread
    over two measurement windows."""
    return [request_row(**{metric: v, "window": f"w{i % 2}", "prompt_id": f"p{i}", **kw}) for i, v in enumerate(values)]


def judge(fn, rows: list[dict]) -> dict:
    """The claim row check_all gives `fn` on `rows`."""
    return claims.check_all(frame(rows), [claims.Claim("t", "t", fn)]).iloc[-1].to_dict()


def verdict(fn, rows: list[dict]) -> str:
    return judge(fn, rows)["verdict"]


MLX4 = {"runtime": "mlx", "quant": "4bit"}


# --- matched cells: transport and precision class ------------------------------------------------------------------
def test_precision_class_of_every_format():
    names = {"fp32": "32-bit", "F32": "32-bit", "F16": "16-bit", "BF16": "16-bit", "bf16": "16-bit",
             "fp16": "16-bit", "Q8_0": "8-bit", "8bit": "8-bit", "Q6_K": "6-bit", "6bit": "6-bit",
             "Q4_K_M": "4-bit", "Q4_0": "4-bit", "4bit": "4-bit", "q4f16_1": "4-bit", "q0f16": "16-bit",
             "3bit": "3-bit", "mixed_3_6": "mixed", "IQ4_XS": "4-bit", "weird": None, None: None}
    assert {q: precision(q) for q in names} == names


def test_runtimes_are_compared_only_within_a_transport_and_precision_class():
    fast_bf16 = requests("decode_tps", spread(50), runtime="mlx", quant="bf16")
    q4 = requests("decode_tps", spread(40))
    assert verdict(claims.mlx_highest_decode, fast_bf16 + q4) == "not testable here"     # 16-bit vs 4-bit
    server = requests("decode_tps", spread(50), transport="server", **MLX4)
    assert verdict(claims.mlx_highest_decode, server + q4) == "not testable here"        # server vs in-process
    apart = requests("decode_tps", spread(50), prompt_tokens=512, **MLX4)
    assert verdict(claims.mlx_highest_decode, apart + q4) == "not testable here"         # another cell


# --- comparative claims, per matched cell pair ------------------------------------------------------------------
def test_mlx_highest_decode_decided_per_cell_pair():
    llama = requests("decode_tps", spread(40)) + requests("decode_tps", spread(30), prompt_tokens=4096)
    mlx = requests("decode_tps", spread(50), **MLX4) + requests("decode_tps", spread(36), prompt_tokens=4096, **MLX4)
    row = judge(claims.mlx_highest_decode, llama + mlx)
    assert row["verdict"] == "supported"
    assert row["effect"].startswith("mlx/inprocess/4bit ÷ llamacpp/inprocess/Q4_K_M decode: 1.2 [")
    assert "(n 6/6) at unique 4096→32, least favourable of 2 cell pairs" in row["effect"]     # 36/30 is the closer call
    assert "2 cell pairs (2 supported)" in row["evidence"]
    slower = requests("decode_tps", spread(50), **MLX4) + requests("decode_tps", spread(20), prompt_tokens=4096, **MLX4)
    assert verdict(claims.mlx_highest_decode, llama + slower) == "contradicted"     # one cell clearly contradicts
    # overlapping intervals: no decision, and an estimate of the n that would make one
    noisy = requests("decode_tps", spread(42, rel=0.3), **MLX4) + requests("decode_tps", spread(40, rel=0.3))
    assert verdict(claims.mlx_highest_decode, noisy).startswith("inconclusive (needs n ≈ ")


def test_thin_evidence_reads_inconclusive():
    thin = requests("decode_tps", [50.0, 51.0], **MLX4) + requests("decode_tps", [10.0, 11.0])   # n = 2 per side
    row = judge(claims.mlx_highest_decode, thin)
    assert row["verdict"] == "inconclusive (1 of 1 cell pair below minimum evidence; needs n ≈ 5)"
    assert "n 2/2 < 5" in row["evidence"] and "[–]" in row["effect"]
    assert "minimum evidence: n ≥ 5 requests per side per cell" in \
        claims.check_all(frame(thin)).set_index("claim").loc["MLX achieves the highest sustained decode throughput",
                                                               "threshold"]


def test_mlc_ttft_below_mlx():
    mlc = {"runtime": "mlc", "quant": "q4f16_1", "transport": "server"}
    mlx = dict(transport="server", **MLX4)
    assert verdict(claims.mlc_ttft_below_mlx, requests("ttft_s", spread(0.5), **mlc) +
                   requests("ttft_s", spread(0.8), **mlx)) == "supported"
    assert verdict(claims.mlc_ttft_below_mlx, requests("ttft_s", spread(0.9), **mlc) +
                   requests("ttft_s", spread(0.8), **mlx)) == "contradicted"
    assert verdict(claims.mlc_ttft_below_mlx, requests("ttft_s", [0.5, 0.6], **mlc) +
                   requests("ttft_s", [0.8, 0.9], **mlx)).startswith("inconclusive")
    beyond = {"prompt_tokens": 32768}
    assert verdict(claims.mlc_ttft_below_mlx, requests("ttft_s", spread(0.5), **mlc, **beyond) +
                   requests("ttft_s", spread(0.8), **mlx, **beyond)) == "not testable here"      # > 16k only


def test_quantization_speeds_decode_within_one_runtime_and_transport():
    f16 = requests("decode_tps", spread(20), quant="F16")
    assert verdict(claims.quantization_speeds_decode, f16 + requests("decode_tps", spread(40))) == "supported"
    assert verdict(claims.quantization_speeds_decode, f16 + requests("decode_tps", spread(20))) == "contradicted"
    assert verdict(claims.quantization_speeds_decode, f16[:2] + requests("decode_tps", [40.0, 41.0])).startswith(
        "inconclusive")
    other = requests("decode_tps", spread(40), transport="server")
    assert verdict(claims.quantization_speeds_decode, f16 + other) == "not testable here"


def test_most_stable_itl_decided_by_a_bootstrap_over_requests():
    steady = [0.02] * 31
    spiky = [0.02] * 30 + [0.2]                      # one stall per request: p99/p50 = 10
    mlx = requests("itl_s", [steady] * 6, **MLX4)
    row = judge(claims.mlx_most_stable_itl, mlx + requests("itl_s", [spiky] * 6))
    assert row["verdict"] == "supported" and "ITL p99/p50: 0.1 [0.1, 0.1] (n 6/6)" in row["effect"]
    assert verdict(claims.mlx_most_stable_itl, requests("itl_s", [spiky] * 6, **MLX4) +
                   requests("itl_s", [steady] * 6)) == "contradicted"
    short = judge(claims.mlx_most_stable_itl, requests("itl_s", [steady[:10]] * 6, **MLX4) +
                  requests("itl_s", [spiky[-10:]] * 6))
    assert short["verdict"].startswith("inconclusive") and "60 < 100 gaps a side" in short["evidence"]


def test_prefix_reuse_per_cell_latency_and_hit_rate():
    def ollama(t_on: float, cached: int) -> list[dict]:      # 3 sets: 6 prompts per side a cache can serve
        return [r for k in range(3) for r in reuse_rows("ollama", 1.0 + 0.01 * k, t_on + 0.01 * k, cached)]
    assert verdict(claims.ollama_prefix_reuse, reuse_rows("llamacpp", 1.0, 0.2, 900)) == "not testable here"
    assert verdict(claims.ollama_prefix_reuse, reuse_rows("none", 1.0, 0.2, 900)) == "not testable here"
    row = judge(claims.ollama_prefix_reuse, ollama(0.75, 850))
    assert row["verdict"] == "supported"
    assert "ollama/server/Q4_K_M TTFT reuse on ÷ off: 0.75" in row["effect"] and "hit rate: 0.85" in row["effect"]
    assert verdict(claims.ollama_prefix_reuse, ollama(0.95, 850)) == "contradicted"      # a 5 % cut
    assert verdict(claims.ollama_prefix_reuse, ollama(0.75, 300)) == "contradicted"      # 30 % of tokens reused
    assert verdict(claims.ollama_prefix_reuse, reuse_rows("ollama", 1.0, 0.75, 850)).startswith(
        "inconclusive (2 of 2 decisions below minimum evidence")                          # 2 prompts per side
    compared = judge(claims.ollama_prefix_reuse, ollama(0.75, 850) + reuse_rows("llamacpp", 1.0, 0.25, 900))
    assert "for comparison: llamacpp/server/Q4_K_M TTFT reuse on ÷ off: 0.25" in compared["evidence"]


# --- claims on one runtime ------------------------------------------------------------------------------------
def test_ttft_grows_per_consecutive_length_pair():
    grows = [r for n in (1024, 4096) for r in requests("ttft_s", spread(n / 1000), prompt_tokens=n)]
    assert verdict(claims.ttft_grows, grows) == "supported"
    shrinks = [r for n in (1024, 4096) for r in requests("ttft_s", spread(5 - n / 1000), prompt_tokens=n)]
    assert verdict(claims.ttft_grows, shrinks) == "contradicted"
    thin = [r for n in (1024, 4096) for r in requests("ttft_s", [n / 1000, n / 900], prompt_tokens=n)]
    assert verdict(claims.ttft_grows, thin).startswith("inconclusive")
    assert verdict(claims.ttft_grows, grows[:6]) == "not testable here"                # one length


def test_ttft_linear_decided_on_the_exponents_interval():
    def at(lengths, power, n=6):
        return [r for x in lengths for r in requests("ttft_s", spread((x / 1000) ** power, n, 0.05), prompt_tokens=x)]
    three = (1024, 4096, 16384)
    (fit,) = claims.ttft_exponents(frame(at(three, 1.0)))
    assert fit.value == pytest.approx(1.0) and fit.lo < 1.0 < fit.hi and fit.hi - fit.lo < 0.1
    assert verdict(claims.ttft_linear, at(three, 1.0)) == "supported"
    assert verdict(claims.ttft_linear, at(three, 2.0)) == "contradicted"
    two = judge(claims.ttft_linear, at(three[:2], 1.0))                 # a line through 2 points always fits
    assert two["verdict"].startswith("inconclusive") and "2 < 3 lengths" in two["evidence"]
    assert verdict(claims.ttft_linear, at(three, 1.0, n=2)).startswith("inconclusive")      # n = 2 per length
    noisy = [r for x in three for r in requests("ttft_s", spread((x / 1000) ** 0.8, 6, 0.9), prompt_tokens=x)]
    assert verdict(claims.ttft_linear, noisy).startswith("inconclusive (needs n ≈ ")
    assert verdict(claims.ttft_linear, at(three[:1], 1.0)) == "not testable here"
    shorter = requests("ttft_s", spread(5.0), prompt_tokens=512)                          # < 1k: left out
    assert verdict(claims.ttft_linear, at(three, 1.0) + shorter) == "supported"


def test_decode_collapse_is_relative_to_the_same_artifacts_short_cell():
    short = requests("decode_tps", spread(30.0))
    assert verdict(claims.llamacpp_decode_collapse, short) == "not testable here"
    collapsed = requests("decode_tps", spread(1.1), prompt_tokens=32704)
    row = judge(claims.llamacpp_decode_collapse, short + collapsed)
    assert row["verdict"] == "supported" and "llamacpp/inprocess/Q4_K_M decode: 0.0367 [" in row["effect"]
    # a slow machine: 1.8 tok/s at 32k is no collapse when its 1k cell decodes at 2.0
    slow = requests("decode_tps", spread(2.0)) + requests("decode_tps", spread(1.8), prompt_tokens=32704)
    assert verdict(claims.llamacpp_decode_collapse, slow) == "contradicted"
    thin = requests("decode_tps", [30.0, 31.0]) + requests("decode_tps", [1.1, 1.2], prompt_tokens=32704)
    assert verdict(claims.llamacpp_decode_collapse, thin).startswith("inconclusive")


def test_rotating_window_claim_decided_per_length_pair():
    def mlx(n, kv, bound=256):
        extra = {"kv_cache_bytes": kv, "kv_cache_tokens": min(n, bound or n)}
        if bound:
            extra["max_kv_size"] = bound
        return request_row(runtime="mlx", transport="inprocess-rotating", quant="4bit", prompt_tokens=n,
                           extra=json.dumps(extra))
    assert verdict(claims.mlx_rotating_stable, [mlx(512, 10, None)]) == "not testable here"
    assert verdict(claims.mlx_rotating_stable, [mlx(512, 100) for _ in range(5)]) == "not testable here"
    flat = [mlx(512, 100 + i) for i in range(5)] + [mlx(1024, 104 + i) for i in range(5)]
    assert verdict(claims.mlx_rotating_stable, flat) == "supported"
    grows = [mlx(512, 100 + i) for i in range(5)] + [mlx(1024, 200 + i) for i in range(5)]
    assert verdict(claims.mlx_rotating_stable, grows) == "contradicted"
    assert verdict(claims.mlx_rotating_stable, [mlx(512, 100), mlx(1024, 104)]).startswith("inconclusive")


def test_torch_oom_needs_every_long_request_to_fail():
    t = {"runtime": "torch", "transport": "inprocess", "quant": "fp32"}
    assert verdict(claims.torch_ooms, [request_row(**t, prompt_tokens=1024)]) == "not testable here"
    ooms = [request_row(**t, prompt_tokens=n, status="oom") for n in (4096, 8192) for _ in range(3)]
    row = judge(claims.torch_ooms, ooms + [request_row(**t, prompt_tokens=1024)])
    assert row["verdict"] == "supported"
    assert row["effect"] == "6 of 6 torch requests of > 2,048 tokens OOM, 0 completed; first OOM at 4096 tokens"
    # one OOM row no longer supports the claim when a longer prompt completed
    mixed = judge(claims.torch_ooms, ooms[:3] + [request_row(**t, prompt_tokens=8192)])
    assert mixed["verdict"] == "contradicted" and "3 of 4" in mixed["effect"] and "1 completed" in mixed["effect"]
    assert "on cpu: completed up to 8192 tokens" in mixed["evidence"]
    assert verdict(claims.torch_ooms, ooms[:1]).startswith("inconclusive")              # one OOM row: too thin


def test_cold_start_decided_on_the_median_over_sessions():
    def loads(seconds):
        return [request_row(quant=q, cold_start_s=s) for q, s in zip(("Q4_K_M", "Q8_0") * 3, seconds)]
    assert verdict(claims.llamacpp_cold_start, loads(spread(0.3))) == "supported"
    assert verdict(claims.llamacpp_cold_start, loads(spread(0.8))) == "contradicted"
    assert verdict(claims.llamacpp_cold_start, loads([0.3, 0.31])).startswith("inconclusive")   # 2 loads
    assert verdict(claims.llamacpp_cold_start, [request_row(cold_start_s=float("nan"))]) == "not testable here"


# --- the registry: errors, drift, columns ---------------------------------------------------------------------
@pytest.mark.parametrize("exc", [KeyError("decode_tps"), ValueError("bad\nsecond line"), ZeroDivisionError("x"),
                                 TypeError("t")])
def test_an_exception_in_a_claim_is_an_error_in_the_report(exc, caplog):
    def broken(rows):
        raise exc
    with caplog.at_level(logging.ERROR, logger="localbench.analysis.claims"):
        table = claims.check_all(frame([request_row()]), [claims.Claim("broken", "t", broken)])
    row = table.set_index("claim").loc["broken"]
    assert row["verdict"] == "error"
    assert row["evidence"] == f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    assert len(table) == len(claims.CLAIMS) + 1                 # the other claims were still judged


def test_drift_flagged_rows_are_left_out_of_every_verdict():
    llama = [{**r, "drift_flag": False} for r in requests("decode_tps", spread(40))]
    mlx = [{**r, "drift_flag": False} for r in requests("decode_tps", spread(50), **MLX4)]
    drifted = [{**r, "drift_flag": True, "window": "wd"} for r in requests("decode_tps", spread(20), **MLX4)]
    row = judge(claims.mlx_highest_decode, llama + mlx + drifted)
    assert row["verdict"] == "supported" and "(n 6/6)" in row["effect"]
    assert row["evidence"].endswith("; 6 rows of drift-flagged windows left out")
    # the same slow rows from a window that held still decide the claim
    assert verdict(claims.mlx_highest_decode, llama + [{**r, "drift_flag": False} for r in drifted]) == "contradicted"


def test_check_all_columns():
    table = claims.check_all(frame([request_row(cold_start_s=0.3)]))
    assert list(table.columns) == ["claim", "threshold", "verdict", "effect", "evidence", "_links"]
    assert table["threshold"].str.contains("minimum evidence: ").all()
    thin_cold_start = "inconclusive (1 of 1 median below minimum evidence; needs n ≈ 6)"     # one load
    assert set(table["verdict"]) == {"not testable here", thin_cold_start}


# --- the quality claim (a frame claim) ------------------------------------------------------------------------
CFG = {"claim": {"max_delta_ppl": 0.02, "min_top1": 0.90}}


def quality_frame(**overrides) -> pd.DataFrame:
    """Reference + GGUF F16 + Q8_0 with bootstrap intervals over 8,192 scored tokens; `overrides`: per quant."""
    base = {"status": "ok", "reason": "", "ppl_ref": 10.0, "kld_mean": 1e-3, "kld_p99": 1e-2, "tokens_scored": 8192,
            "reference": "hf/fp32"}
    rows = [{**base, "runtime": "torch", "format": "hf", "quant": "fp32", "reason": "reference", "ppl": 10.0,
             "delta_ppl": 0.0, "delta_ppl_lo": 0.0, "delta_ppl_hi": 0.0, "top1": 1.0, "top1_lo": 1.0, "top1_hi": 1.0,
             "bits_per_weight": 32.0, "decode_tps": 5.0},
            {**base, "runtime": "llamacpp", "format": "gguf", "quant": "F16", "ppl": 10.0, "delta_ppl": 0.0,
             "delta_ppl_lo": -0.001, "delta_ppl_hi": 0.001, "top1": 0.99, "top1_lo": 0.98, "top1_hi": 1.0,
             "bits_per_weight": 16.0, "decode_tps": 10.0},
            {**base, "runtime": "llamacpp", "format": "gguf", "quant": "Q8_0", "ppl": 10.05, "delta_ppl": 0.005,
             "delta_ppl_lo": 0.002, "delta_ppl_hi": 0.008, "top1": 0.97, "top1_lo": 0.96, "top1_hi": 0.98,
             "bits_per_weight": 8.5, "decode_tps": 20.0}]
    out = pd.DataFrame(rows)
    for quant, values in overrides.items():
        for key, value in values.items():
            out.loc[out["quant"] == quant, key] = value
    return out


def quality(frame_: pd.DataFrame, cfg: dict = CFG) -> dict:
    (row,) = claims.check_all(None, quality=frame_, cfg=cfg).to_dict("records")
    return row


def test_quality_claim_decided_on_the_intervals():
    row = quality(quality_frame())
    assert row["claim"].endswith("llamacpp gguf/Q8_0") and row["verdict"] == "supported"
    assert row["effect"].startswith("ΔPPL +0.50% [+0.20%, +0.80%], top-1 97.0% [96.0%, 98.0%] over 8,192 scored")
    assert "8.50 vs 16.00 bits/weight (gguf/F16)" in row["effect"] and "no interval" in row["effect"]   # decode
    assert quality(quality_frame(Q8_0={"delta_ppl_lo": 0.03, "delta_ppl_hi": 0.05}))["verdict"] == "contradicted"
    assert quality(quality_frame(Q8_0={"top1_lo": 0.80, "top1_hi": 0.85}))["verdict"] == "contradicted"
    straddles = quality(quality_frame(Q8_0={"delta_ppl": 0.015, "delta_ppl_lo": 0.01, "delta_ppl_hi": 0.03}))
    assert straddles["verdict"] == "inconclusive (needs ≈ 32,768 scored tokens)"   # half-width 2x the gap: 4x n
    thin = quality(quality_frame(Q8_0={"tokens_scored": 765}))["verdict"]
    assert thin == "inconclusive (below minimum evidence: 765 < 8,192 scored tokens)"


def test_quality_claim_without_intervals_is_inconclusive():
    absent = quality(quality_frame().drop(columns=["delta_ppl_lo", "delta_ppl_hi", "top1_lo", "top1_hi"]))
    assert absent["verdict"] == "inconclusive (no interval)" and "(no interval)" in absent["effect"]
    assert quality(quality_frame(Q8_0={"top1_lo": float("nan")}))["verdict"] == "inconclusive (no interval)"


def test_quality_claim_compares_size_with_its_own_formats_full_precision():
    # 20 bits per weight is fewer than fp32's 32 (the old check) but more than the GGUF F16's 16
    assert quality(quality_frame(Q8_0={"bits_per_weight": 20.0}))["verdict"] == "contradicted"
    no_f16 = quality_frame()
    no_f16 = no_f16[no_f16["quant"] != "F16"]
    row = quality(no_f16)
    assert row["verdict"] == "inconclusive" and "no full-precision gguf artifact" in row["evidence"]


def test_quality_claim_decode_by_intervals_where_the_frame_has_them():
    slower = quality(quality_frame(Q8_0={"decode_tps": 5.0}))
    assert slower["verdict"] == "contradicted" and "no interval" in slower["effect"]
    ci = {"F16": {"decode_tps_lo": 9.0, "decode_tps_hi": 11.0}}
    faster = quality(quality_frame(**ci, Q8_0={"decode_tps_lo": 18.0, "decode_tps_hi": 22.0}))
    assert faster["verdict"] == "supported" and "decode 20.0 [18.0, 22.0] vs 10.0 [9.0, 11.0]" in faster["effect"]
    overlap = quality(quality_frame(**ci, Q8_0={"decode_tps": 10.5, "decode_tps_lo": 8.0, "decode_tps_hi": 13.0}))
    assert overlap["verdict"] == "inconclusive"
    assert quality(quality_frame().iloc[:2])["verdict"] == "not testable here"       # no quantized artifact
