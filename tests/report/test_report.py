"""Report pieces from hand-made rows: matched cells, the windowed llama-bench fidelity flag, the
roofline's physics check, the capability tables. (Claims: tests/analysis/test_claims.py.)"""

import pandas as pd
from fakes import served_row as row

from localbench.analysis.cells import common, reference_cell
from localbench.analysis.roofline import roofline_table
from localbench.report import tables


def test_only_matched_cells_are_compared():
    rows = pd.DataFrame([row("mlx", "bf16", 5.0, 50.0, prompt_tokens=32), row("torch", "fp32", 10.0, 100.0),
                         row("torch", "fp32", 12.0, 100.0, prompt_tokens=32),
                         row("mlx", "bf16", 5.0, 50.0, prompt_tokens=32, max_tokens=16)])
    both = common(rows)
    assert set(both["prompt_tokens"]) == {32} and set(both["max_tokens"]) == {32}
    assert reference_cell(rows)["prompt_tokens"] == 32
    pivot = tables.pivot(rows, "decode_tps").set_index("runtime/transport/quant")
    assert pivot.loc["torch/inprocess/fp32", "unique 128→32"] == "10 [–] (n=1)"     # no interval from n=1
    assert pivot.loc["mlx/inprocess/bf16", "unique 128→32"] == ""       # not measured: blank, never pooled


def test_cells_print_median_interval_n_and_why_they_stopped_short():
    decode = [10, 11, 12, 9, 10.5, 30]
    rows = pd.DataFrame([row("torch", "fp32", v, 100.0, window=f"w{i % 2}") for i, v in enumerate(decode)]
                        + [row("mlx", "bf16", 5.0, 50.0), row("mlx", "bf16", 6.0, 50.0)])
    extras = [{"cells": [{"runtime": "mlx", "transport": "inprocess", "quant": "bf16", "workload": "unique",
                          "target_tokens": 128, "cache_reuse": False, "trials": 2, "stop": "time cap"}]}]
    pivot = tables.pivot(rows, "decode_tps", extras=extras).set_index("runtime/transport/quant")
    torch = pivot.loc["torch/inprocess/fp32", "unique 128→32"]
    assert torch == "10.8 [9, 30] (n=6)"             # order statistics (the range at n=6) or wider
    assert pivot.loc["mlx/inprocess/bf16", "unique 128→32"] == "5.5 [–] (n=2, time cap)"
    flagged = pd.concat([rows, pd.DataFrame([row("ollama", "Q4_K_M", 40.0, 90.0, drift_flag=True)] * 2)])
    assert tables.pivot(flagged, "decode_tps").set_index("runtime/transport/quant").loc[
        "ollama/inprocess/Q4_K_M", "unique 128→32"] == "– (all 2 in drift-flagged windows)"
    detail = tables.detail(rows, extras).set_index("runtime")
    assert detail.loc["mlx", "stopped short"] == "time cap" and detail.loc["torch", "windows"] == 2
    assert detail.loc["torch", "TTFT p99 (s)"].startswith("max of 6")      # no p99 from 6 requests


def test_fidelity_pairs_measurements_of_one_window():
    rows = pd.DataFrame([row("llamacpp", "Q4_K_M", 20.0, 240.0, extra='{"llama_prompt_ms": 532.3}'),
                         row("llamacpp", "Q4_K_M", 20.0, 240.0, extra='{"llama_prompt_ms": 532.3}'),
                         row("llamacpp", "Q4_K_M", 27.0, 250.0, transport="server", window="w2",
                             extra='{"timings": {"prompt_ms": 505.0}}'),
                         row("llamacpp", "Q4_K_M", 10.0, 100.0, transport="server", window="w3")])
    bench = [{"kind": "llama-bench fidelity", "quant": "Q4_K_M", "prompt_tokens": 128, "n_gen": 32,
              "bench_prefill_tps": 250.0, "bench_decode_tps": 28.0}]
    extras = [{"runtime": "llamacpp", "windows": [
        {"window": "w1", "transport": "inprocess", "quant": "Q4_K_M", "probes_gbps": [20, 14, 20],
         "references": bench},
        {"window": "w2", "transport": "server", "quant": "Q4_K_M", "probes_gbps": [20, 20, 20], "references": bench}]}]
    table = tables.fidelity(rows, extras, tolerance=0.05, drift_tolerance=0.05).set_index("transport")
    assert "decode -28.6%" in table.loc["inprocess", "flag"] and "probe moved 30.0%" in table.loc["inprocess", "flag"]
    assert table.loc["server", "flag"] == "ok" and table.loc["server", "n"] == 1     # w3's row is not paired
    overhead = table["TTFT − own prompt eval (ms, median)"]      # TTFT 533.3 / 512 ms minus llama.cpp's own time
    assert round(overhead["inprocess"], 1) == 1.0 and round(overhead["server"], 1) == 7.0


def test_roofline_ceiling_and_impossible_ratios():
    rows = pd.DataFrame([row("llamacpp", "Q4_K_M", 20.0, 240.0, format="gguf", device="cpu"),
                         row("llamacpp", "Q4_K_M", 30.0, 240.0, format="gguf", device="cpu"),
                         row("torch", "F16", 30.0, 240.0, format="hf", device="cpu", weights_memory="cpu"),
                         row("mlx", "bf16", 5.0, 50.0, format="mlx", device="gpu")])
    artifacts = pd.DataFrame([{"format": "gguf", "quant": "Q4_K_M", "size_bytes": 500e6},
                              {"format": "hf", "quant": "F16", "size_bytes": 1e9},
                              {"format": "mlx", "quant": "bf16", "size_bytes": 1e9}])
    table = roofline_table(rows, artifacts, {"cpu": 20.0}).set_index("runtime")
    assert "mlx" not in table.index                     # no measured bandwidth for the GPU's memory: no row
    assert table.loc["llamacpp", "ceiling tok/s"] == 40.0 and table.loc["llamacpp", "decode tok/s p50"] == 25.0
    assert table.loc["llamacpp", "of ceiling"] == "62%"
    assert table.loc["torch", "of ceiling"].startswith("PROBE FAILURE: 150%")   # physics: never a result


def test_capability_tables_show_declarations_of_unavailable_runtimes():
    from localbench.report.runtimes import capability_tables
    extras = [{"runtime": "mlc", "probe": {"available": False, "reason": "not installed"}},
              {"runtime": "ollama", "skipped": "runtime.ollama is false"}]
    text = capability_tables(extras)
    assert "paged KV cache" in text and "not declared" not in text


def test_roofline_uses_the_highest_bandwidth_reading():
    """A drift probe that read more than the calibrate stage's probe raises the ceiling (both are lower bounds)."""
    rows = pd.DataFrame([row("llamacpp", "Q4_K_M", 20.0, 240.0, format="gguf", device="cpu", probe_gbps=30.0)])
    artifacts = pd.DataFrame([{"format": "gguf", "quant": "Q4_K_M", "size_bytes": 500e6}])
    table = roofline_table(rows, artifacts, {"cpu": 20.0}).set_index("runtime")
    assert table.loc["llamacpp", "bandwidth (GB/s)"] == 30.0 and table.loc["llamacpp", "ceiling tok/s"] == 60.0


def test_roofline_counts_the_kv_read_where_it_matters():
    """At 128 prompt tokens the KV read is small (no second ceiling); at 32k it is most of the bytes a token reads."""
    rows = pd.DataFrame([row("llamacpp", "Q4_K_M", 20.0, 240.0, format="gguf", device="cpu"),
                         row("llamacpp", "Q4_K_M", 10.0, 240.0, format="gguf", device="cpu", prompt_tokens=32768)])
    artifacts = pd.DataFrame([{"format": "gguf", "quant": "Q4_K_M", "size_bytes": 500e6}])
    table = roofline_table(rows, artifacts, {"cpu": 20.0}, kv_per_token=12288.0).set_index("prompt")
    assert table.loc[128, "ceiling tok/s"] == 40.0 and table.loc[128, "of ceiling (weights + KV)"] == "–"
    kv = 12288.0 * (32768 + 16)                           # KV bytes read per token at mid-answer
    assert table.loc[32768, "ceiling tok/s (weights + KV)"] == 20e9 / (500e6 + kv)
    assert table.loc[32768, "of ceiling (weights + KV)"] == f"{10.0 / (20e9 / (500e6 + kv)):.0%}"
