"""The study's claims as decisions: each judged on matched cells, with its threshold, "not testable here" when
the rows cannot decide it."""
import json
import math

import pandas as pd
import pytest
from fakes import frame, request_row, reuse_rows, served_row

from localbench.analysis import claims


def verdict(fn, rows) -> str:
    table = claims.check_all(frame(rows), [claims.Claim("t", "t", fn)])
    return table.iloc[-1]["verdict"]


def test_claims_are_judged_on_matched_cells():
    rows = pd.DataFrame([served_row("mlx", "bf16", 50.0, 500.0), served_row("torch", "fp32", 10.0, 100.0),
                         served_row("mlx", "bf16", 50.0, 400.0, prompt_tokens=512),
                         served_row("torch", "fp32", 10.0, 90.0, prompt_tokens=512)])
    checks = claims.check_all(rows).set_index("claim")["verdict"]
    assert checks["MLX achieves the highest sustained decode throughput"] == "supported"
    assert checks["MLC-LLM has lower TTFT than MLX on moderate prompts (≤16k)"] == "not testable here"
    assert checks["TTFT rises with input length (full prefill before the first token)"] == "supported"
    faster_torch = pd.concat([rows, pd.DataFrame([served_row("torch", "fp32", 500.0, 100.0)])])
    assert claims.check_all(faster_torch).set_index("claim")["verdict"][
        "MLX achieves the highest sustained decode throughput"] == "contradicted"
    # torch measured on another cell only: nothing matched, so nothing can be supported
    apart = pd.DataFrame([served_row("mlx", "bf16", 50.0, 500.0),
                          served_row("torch", "fp32", 10.0, 100.0, prompt_tokens=64)])
    assert claims.check_all(apart).set_index("claim")["verdict"][
        "MLX achieves the highest sustained decode throughput"] == "not testable here"


def test_single_runtime_cannot_support_a_comparative_claim():
    rows = pd.DataFrame([served_row("mlx", "bf16", 50.0, 500.0, itl_s=[0.02] * 200)])
    checks = claims.check_all(rows).set_index("claim")["verdict"]
    assert checks["MLX achieves the highest sustained decode throughput"] == "not testable here"
    assert checks["MLX has the most stable inter-token latency"] == "not testable here"


def test_nan_cold_start_is_not_testable():
    rows = pd.DataFrame([served_row("llamacpp", "Q8_0", 20.0, 200.0, cold_start_s=math.nan)])
    verdict = claims.check_all(rows).set_index("claim")["verdict"]["llama.cpp cold start is under 0.5 s (cached GGUF)"]
    assert verdict == "not testable here"


def test_decode_collapse_claim():
    short = request_row(prompt_tokens=1024, decode_tps=30.0)
    assert verdict(claims.llamacpp_decode_collapse, [short]) == "not testable here"
    collapsed = request_row(prompt_tokens=32704, decode_tps=1.1)
    assert verdict(claims.llamacpp_decode_collapse, [short, collapsed]) == "supported"
    assert verdict(claims.llamacpp_decode_collapse, [short, request_row(prompt_tokens=32704, decode_tps=12.0)]) == \
        "contradicted"


def test_ttft_linear_claim_fits_the_exponent():
    lengths = [1024, 4096, 16384]
    linear = [request_row(prompt_tokens=n, ttft_s=n / 1000) for n in lengths]
    quadratic = [request_row(prompt_tokens=n, ttft_s=(n / 1000) ** 2) for n in lengths]
    assert claims.ttft_exponents(frame(linear))["llamacpp/inprocess/Q4_K_M"][0] == pytest.approx(1.0)
    assert verdict(claims.ttft_linear, linear) == "supported"
    assert verdict(claims.ttft_linear, quadratic) == "contradicted"
    assert verdict(claims.ttft_linear, linear[:1]) == "not testable here"      # one length: no fit
    assert verdict(claims.ttft_linear, [*linear, request_row(prompt_tokens=512, ttft_s=5.0)]) == "supported"   # < 1k: out


def test_prefix_reuse_claim_ollama():
    assert verdict(claims.ollama_prefix_reuse, reuse_rows("llamacpp", 1.0, 0.2, 900)) == "not testable here"
    assert verdict(claims.ollama_prefix_reuse, reuse_rows("ollama", 1.0, 0.75, 850)) == "supported"
    assert verdict(claims.ollama_prefix_reuse, reuse_rows("ollama", 1.0, 0.95, 850)) == "contradicted"
    assert verdict(claims.ollama_prefix_reuse, reuse_rows("ollama", 1.0, 0.75, 300)) == "contradicted"
    cut, hit, n = claims.reuse_effect(frame(reuse_rows("ollama", 1.0, 0.75, 850)), "ollama")
    assert (round(cut, 2), round(hit, 2), n) == (0.25, 0.85, 2)    # the 2 prompts after the primer


def test_rotating_window_claim():
    def mlx(n, kv, bound=256):
        extra = {"kv_cache_bytes": kv, "kv_cache_tokens": min(n, bound or n)}
        if bound:
            extra["max_kv_size"] = bound
        return request_row(runtime="mlx", transport="inprocess-rotating", quant="4bit", prompt_tokens=n,
                           extra=json.dumps(extra))
    assert verdict(claims.mlx_rotating_stable, [mlx(512, 10, None)]) == "not testable here"
    assert verdict(claims.mlx_rotating_stable, [mlx(512, 100), mlx(1024, 104)]) == "supported"
    assert verdict(claims.mlx_rotating_stable, [mlx(512, 100), mlx(1024, 200)]) == "contradicted"


def test_torch_oom_claim_says_what_was_seen():
    t = dict(runtime="torch", transport="inprocess", quant="fp32")
    assert verdict(claims.torch_ooms, [request_row(**t, prompt_tokens=1024)]) == "not testable here"
    table = claims.check_all(frame([request_row(**t, prompt_tokens=8192)]),
                             [claims.Claim("t", "t", claims.torch_ooms)])
    assert table.iloc[-1]["verdict"] == "contradicted" and "on cpu: no OOM" in table.iloc[-1]["evidence"]
    assert verdict(claims.torch_ooms, [request_row(**t, prompt_tokens=4096, status="oom")]) == "supported"
