"""Long context and caching: the theoretical KV formula, the claims' verdicts on hand-made rows, the reuse
plan (reuse on/off pairs, slices, skipped cells), and reuse accounting on the real llama.cpp in-process runtime."""
import json
from pathlib import Path

import pandas as pd
import pytest
from fakes import frame, request_row, reuse_rows

from localbench.analysis import longctx
from localbench.builds import llamacpp as llamacpp_build
from localbench.core.hardware import kv_bytes_per_token
from localbench.core.types import Request
from localbench.measure.executor import run_request
from localbench.measure.plan import plan_of
from localbench.measure.session import Measurement
from localbench.measure.store import ResultStore
from localbench.report.longctx import section as longctx_section

ROOT = Path(__file__).resolve().parents[2]
QWEN05 = {"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_size": 896}


row = request_row


# --- KV size -----------------------------------------------------------------------------------------------
def test_kv_theoretical_formula():
    # 24 layers x 2 KV heads x 64 head dim x 2 (K, V) x 2 bytes = 12 KiB per token
    assert kv_bytes_per_token(QWEN05, 2) == 24 * 2 * 64 * 2 * 2 == 12288
    assert longctx.kv_theoretical(QWEN05, 32768, 2) == 384 * 2**20
    assert longctx.kv_theoretical({**QWEN05, "head_dim": 128}, 10, 4) == 24 * 2 * 128 * 2 * 4 * 10


def test_kv_columns_compare_runtime_with_theory():
    rows = frame([row(extra=json.dumps({"kv_buffer_bytes": 384 * 2**20, "kv_cells": 32768, "cached_tokens": 0})),
                  row(runtime="torch", quant="fp32", extra=json.dumps({"kv_cache_bytes": 24576 * 100,
                                                                        "kv_cache_tokens": 100}))])
    out = longctx.kv_columns(rows, QWEN05)
    assert list(out["kv_runtime_bytes"] / out["kv_theory_bytes"]) == [1.0, 1.0]   # f16 at n_ctx; fp32 at 100
    table = longctx.per_length(rows, QWEN05)
    assert set(table["runtime / theory"]) == {1.0}


# --- claims --------------------------------------------------------------------------------------------------


def test_reuse_table_speedup_and_hit_rate():
    table = longctx.reuse(frame(reuse_rows("llamacpp", 1.0, 0.25, 900)))
    (r,) = table.to_dict("records")
    assert r["speedup (off/on)"] == pytest.approx(3 / 1.5) and r["hit rate"] == pytest.approx(0.6)   # with the primer
    assert r["speedup after the first"] == pytest.approx(4.0)
    assert r["requests with a hit"] == "2/3"


def test_can_hit_leaves_out_the_prompts_that_prime_a_cache():
    assert [longctx.can_hit(p) for p in ("prefix-2048-0", "prefix-2048-1", "prefix-2048-10", "chat-8192-0-t0",
                                         "chat-8192-0-t1", "chat-8192-0-t10")] == [False, True, True, False, True, True]


def test_section_renders_what_was_measured():
    rows = frame([row(prompt_tokens=n, ttft_s=n / 1000, trial=t) for n in (1024, 4096) for t in (0, 1)]
                 + reuse_rows("llamacpp", 1.0, 0.25, 900)
                 + [row(prompt_tokens=32704, status="skipped", error="prompt longer than ... budget")])
    md = longctx_section(rows, [], [Path("plots/figures/longctx_ttft_vs_context.png")], QWEN05).markdown()
    assert "## Long context and caching" in md and "12 KiB per token" in md
    assert "skipped" in md and "longctx_ttft_vs_context" in md


# --- the plan: reuse on/off pairs, slices, skipped cells ---------------------------------------------------------
def prompts_frame() -> pd.DataFrame:
    rows = [{"workload": w, "prompt_id": f"{w}-{n}-{i}", "target_tokens": n, "ids": list(range(n // 100)),
             "text": "x", "chat": False, "messages": "null"}
            for w in ("unique", "prefix") for n in (1000, 4000) for i in range(2 if w == "prefix" else 1)]
    return pd.DataFrame(rows)


def test_plan_pairs_reuse_on_before_off_and_slices_narrow():
    wl = {"types": ["unique"], "lengths": [1000], "min_trials": 2, "max_trials": 2, "max_tokens": 8, "cache_reuse": ["prefix"],
          "slices": [{"types": ["prefix"], "lengths": [4000], "trials": 1, "reuse_baseline": True},
                     {"types": ["unique"], "lengths": [4000], "runtimes": ["other"]},
                     {"types": ["unique"], "lengths": [1000, 4000], "trials": 1, "quants": ["Q4_K_M"]}]}
    plan = plan_of(prompts_frame(), wl, "llamacpp")
    got = [(c.prompt_id, c.trial, c.request.reuse_cache) for c in plan]
    assert got[:2] == [("unique-1000-0", 0, False), ("unique-1000-0", 1, False)]
    assert got[2:6] == [("prefix-4000-0", 0, True), ("prefix-4000-1", 0, True),       # reuse on first (sibling
                        ("prefix-4000-0", 0, False), ("prefix-4000-1", 0, False)]     # follows sibling), then off
    assert got[6:] == [("unique-4000-0", 0, False)]          # unique-1000-0 trial 0 is already planned: once
    assert plan[6].quants == ("Q4_K_M",) and not plan[6].sweep and plan[0].sweep
    assert all(c.prompt_id != "unique-4000-0" or c.quants for c in plan)   # the `other` runtime's slice is not ours


def test_cells_over_the_budget_become_skipped_rows(tmp_path):
    from fakes import ART, WL, ScriptedRuntime, plan
    wl = {**WL, "warmup": 0, "max_prompt_tokens": 10}
    store = ResultStore(tmp_path / "p.jsonl", "k")
    runtime = ScriptedRuntime()
    Measurement(runtime, store, "host", wl).run([ART], plan(n=3, trials=1))
    status = {r["prompt_id"]: (r["status"], r["error"]) for r in store.rows}
    assert status["p0"] == ("ok", None)
    assert status["p1"][0] == status["p2"][0] == "skipped" and "max_prompt_tokens=10" in status["p1"][1]
    assert runtime.calls == 1


# --- llama.cpp in-process reuse, real runtime ---------------------------------------------------------------
@pytest.mark.skipif(bool(llamacpp_build.missing()), reason=f"llama.cpp not built: {llamacpp_build.missing()}")
def test_llamacpp_inprocess_prefix_reuse_is_counted(tiny_hf_dir, tiny_tokenizer, tmp_path):
    from localbench.artifacts.converters import gguf
    from localbench.core.types import Artifact
    from localbench.runtimes.llamacpp import LlamaCppRuntime

    f16 = gguf.convert(tiny_hf_dir, tmp_path / "F16.gguf", "smollm2", "F16", {})
    art = Artifact(f16["model"], "gguf", "F16", f16["path"], f16["size_bytes"], f16["tokenizer_path"])
    session = LlamaCppRuntime({"n_threads": 2, "n_ctx": 512, "n_batch": 512}).load(art, "inprocess")
    prefix = tiny_tokenizer.encode(" alpha beta gamma delta" * 20)
    tail = lambda text: tuple(prefix + tiny_tokenizer.encode(text)[:20])  # noqa: E731
    req = lambda name, ids, reuse: Request(name, ids, "", 4, reuse_cache=reuse)  # noqa: E731
    try:
        extra = lambda r: json.loads(r["extra"])  # noqa: E731
        first = run_request(session, req("a", tail(" one two three four five six"), True), 60)
        hit = run_request(session, req("b", tail(" seven eight nine ten eleven"), True), 60)
        cold = run_request(session, req("c", tail(" twelve thirteen fourteen"), False), 60)
        assert first["status"] == hit["status"] == cold["status"] == "ok"
        assert extra(first)["cached_tokens"] == 0            # nothing before it shares its prefix
        assert extra(hit)["cached_tokens"] == len(prefix)    # the sibling's shared prefix, reported by llama.cpp
        assert extra(hit)["prompt_evaluated"] == hit["prompt_tokens"] - extra(hit)["cached_tokens"]
        assert extra(cold)["cached_tokens"] == 0             # reuse off: Llama.reset() before it
        assert extra(hit)["kv_cells"] == 512 and extra(hit)["kv_buffer_bytes"] > 0
        rows = frame([{**row(workload="prefix", prompt_id=p, cache_reuse=True, prompt_tokens=r["prompt_tokens"]),
                       "extra": r["extra"]} for p, r in (("a", first), ("b", hit))])
        table = longctx.reuse(rows)
        assert table.iloc[0]["requests with a hit"] == "1/2"
    finally:
        session.close()
