"""Metric formulas on synthetic timestamps with exact expected values."""
import pytest

from localbench.core import metrics

MS = 1_000_000


def timeline(arrivals_ms, tokens, output_tokens, prompt_tokens=100):
    return metrics.Timeline(sent_ns=0, arrivals_ns=[int(a * MS) for a in arrivals_ms], tokens_in_chunk=tokens,
                            prompt_tokens=prompt_tokens, output_tokens=output_tokens)


def test_single_token_chunks():
    m = metrics.compute(timeline([200, 210, 220, 240], [1, 1, 1, 1], 4))
    assert m["ttft_s"] == pytest.approx(0.2)
    assert m["e2e_s"] == pytest.approx(0.24)
    assert m["decode_tps"] == pytest.approx(3 / 0.04)
    assert m["tpot_s"] == pytest.approx(0.04 / 3)
    assert m["e2e_tps"] == pytest.approx(4 / 0.24)
    assert m["prefill_tps"] == pytest.approx(100 / 0.2)
    assert m["itl_s"] == pytest.approx([0.01, 0.01, 0.02])


def test_multi_token_chunk_counts_each_token():
    # 5 tokens: 1 at 100 ms, 3 packed in one chunk at 130 ms, 1 at 150 ms
    m = metrics.compute(timeline([100, 130, 150], [1, 3, 1], 5))
    assert m["itl_s"] == pytest.approx([0.03, 0.0, 0.0, 0.02])
    assert len(m["itl_s"]) == 5 - 1
    assert m["decode_tps"] == pytest.approx(4 / 0.05)


def test_usage_count_not_chunk_count():
    # the server reports 8 tokens in 2 chunks: throughput uses 8
    m = metrics.compute(timeline([100, 200], [4, 4], 8))
    assert m["decode_tps"] == pytest.approx(7 / 0.1)
    assert m["e2e_tps"] == pytest.approx(8 / 0.2)


def test_no_tokens_gives_none():
    m = metrics.compute(timeline([], [], 0))
    assert m["ttft_s"] is None and m["decode_tps"] is None and m["itl_s"] == []


def test_one_token_has_no_decode_rate():
    m = metrics.compute(timeline([50], [1], 1))
    assert m["ttft_s"] == pytest.approx(0.05) and m["decode_tps"] is None and m["tpot_s"] is None
