"""Report pieces from hand-made rows: the llama-bench fidelity flag, the paper's claim checks, the roofline."""
import pandas as pd

from localbench.report import claim_checks, fidelity_table, roofline_table
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


def test_roofline_ceiling_is_bandwidth_over_weight_bytes():
    rows = pd.DataFrame([row("llamacpp", "Q4_K_M", 20.0, 240.0, format="gguf", device="cpu"),
                         row("llamacpp", "Q4_K_M", 30.0, 240.0, format="gguf", device="cpu"),
                         row("mlx", "bf16", 5.0, 50.0, format="mlx", device="gpu")])
    artifacts = pd.DataFrame([{"format": "gguf", "quant": "Q4_K_M", "size_bytes": 500e6},
                              {"format": "mlx", "quant": "bf16", "size_bytes": 1e9}])
    table = roofline_table(rows, artifacts, {"cpu": 20.0}).set_index("runtime")
    assert list(table.index) == ["llamacpp"]            # no measured bandwidth for the GPU's memory: no row
    assert table.loc["llamacpp", "ceiling tok/s"] == 40.0 and table.loc["llamacpp", "decode tok/s p50"] == 25.0
    assert table.loc["llamacpp", "of ceiling"] == "62%"


def test_read_bandwidth_is_measured():
    from localbench.roofline import read_bandwidth, memory_of
    assert 1e8 < read_bandwidth("cpu", size_mib=16, repeats=2) < 1e13
    assert [memory_of(d) for d in ("cpu", "cuda:0", "mps", "Device(gpu, 0)")] == ["cpu", "cuda", "mps", "mps"]


def test_capability_tables_show_declarations_of_unavailable_runtimes():
    from localbench.report import capability_tables
    extras = [{"runtime": "mlc", "probe": {"available": False, "reason": "not installed"}},
              {"runtime": "ollama", "skipped": "runtime.ollama is false"}]
    text = capability_tables(extras)
    assert "paged KV cache" in text and "a daemon (`ollama serve`)" in text and "not declared" not in text
