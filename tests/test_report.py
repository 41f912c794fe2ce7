"""Report pieces from hand-made rows: the llama-bench fidelity flag and the paper's claim checks."""
import pandas as pd

from localbench.report import claim_checks, fidelity_table
from localbench.schema import empty_row


def row(runtime, quant, decode, prefill, prompt_tokens=128, transport="inprocess", **kw):
    r = empty_row()
    r.update(runtime=runtime, transport=transport, quant=quant, status="ok", phase="warm", concurrency=1,
             cache_reuse=False, workload="unique", prompt_tokens=prompt_tokens, max_tokens=32, decode_tps=decode,
             prefill_tps=prefill, ttft_s=prompt_tokens / prefill, e2e_s=1.0, itl_s=[1 / decode] * 31,
             cold_start_s=0.3, **kw)
    return r


def test_fidelity_flags_differences_over_tolerance():
    rows = pd.DataFrame([row("llamacpp", "Q4_K_M", 20.0, 240.0), row("llamacpp", "Q4_K_M", 20.0, 240.0),
                         row("llamacpp", "Q4_K_M", 27.0, 250.0, transport="server")])
    bench = [{"kind": "llama-bench fidelity", "quant": "Q4_K_M", "prompt_tokens": 128, "n_gen": 32,
              "bench_prefill_tps": 250.0, "bench_decode_tps": 28.0}]
    table = fidelity_table(rows, [{"runtime": "llamacpp", "records": bench}], tolerance=0.10).set_index("transport")
    assert "decode differs by -28.6%" in table.loc["inprocess", "flag"]
    assert table.loc["server", "flag"] == "ok"


def test_claims_are_judged_on_the_data():
    rows = pd.DataFrame([row("mlx", "bf16", 50.0, 500.0), row("torch", "fp32", 10.0, 100.0),
                         row("mlx", "bf16", 50.0, 400.0, prompt_tokens=512),
                         row("torch", "fp32", 10.0, 90.0, prompt_tokens=512)])
    checks = claim_checks(rows).set_index("claim")["verdict"]
    assert checks["MLX achieves the highest sustained decode throughput"] == "supported"
    assert checks["MLC-LLM has lower TTFT than MLX on moderate prompts (≤16k)"] == "not testable here"
    assert checks["TTFT rises with input length (full prefill before the first token)"] == "supported"
    faster_torch = pd.concat([rows, pd.DataFrame([row("torch", "fp32", 500.0, 100.0)])])
    assert claim_checks(faster_torch).set_index("claim")["verdict"][
        "MLX achieves the highest sustained decode throughput"] == "contradicted"
