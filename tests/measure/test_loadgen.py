"""The load generator against the reference server: closed and open loop, errors as records, rows."""
import math
import time

import numpy as np
import pytest

from localbench.core.schema import REQUEST_SCHEMA, empty_row, to_table
from localbench.core.types import Request
from localbench.measure import loadgen
from localbench.transport.clients import Target

REQS = [Request(f"p{i}", tuple(range(5 + i)), "a b c", max_tokens=6) for i in range(3)]


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_closed_loop_counts_exact(reference, protocol):
    target = Target(reference.base_url, "reference", protocol=protocol)
    res = loadgen.run_loop(loadgen.closed_loop(target, REQS, 4, num_requests=12, warmup=2))
    assert [r.index for r in res.records] == list(range(12))
    for r in res.records:
        assert r.status == "ok", r.error
        assert sum(r.tokens_in_chunk) == r.usage.output_tokens == 6 == len(r.arrivals_ns)
        assert r.issued_ns <= r.sent_ns < r.arrivals_ns[0] <= r.arrivals_ns[-1] <= r.end_ns
    s = loadgen.summarize_level(res, {"ttft_s": 10.0, "tpot_s": 10.0})
    assert s["ok"] == 12 and s["errors"] == 0 and 1.0 < s["achieved_concurrency"] <= 4.01
    assert s["goodput"] == pytest.approx(s["request_throughput"])
    assert s["output_throughput"] == pytest.approx(6 * s["request_throughput"])
    assert loadgen.summarize_level(res, {"ttft_s": 1e-6})["goodput"] == 0


def test_closed_loop_warms_up_at_the_levels_concurrency(reference, monkeypatch):
    """Warm-ups run as many clients as the level (one request each at least): a batch shape seen first in the
    measured requests would put a server's one-time cost in them."""
    spans, send = [], loadgen.send

    async def timed(*args, **kwargs):
        start = time.perf_counter_ns()
        record = await send(*args, **kwargs)
        spans.append((start, time.perf_counter_ns()))
        return record

    monkeypatch.setattr(loadgen, "send", timed)
    res = loadgen.run_loop(loadgen.closed_loop(Target(reference.base_url, "reference"), REQS, 4, num_requests=4,
                                               warmup=1))
    assert len(res.records) == 4 and len(spans) == 8
    warm = sorted(spans)[:4]
    assert max(start for start, _ in warm) < min(end for _, end in warm)     # all four warm-ups in flight at once


def test_open_loop_and_rows(reference):
    target = Target(reference.base_url, "reference")
    res = loadgen.run_loop(loadgen.open_loop(target, REQS, 200.0, num_requests=10, burstiness=0.5))
    assert len(res.records) == 10 and all(r.status == "ok" for r in res.records)
    rows = [{**empty_row(), **loadgen.record_fields(r, res)} for r in res.records]
    table = to_table(rows, REQUEST_SCHEMA)
    assert table.column("rate").to_pylist() == [200.0] * 10
    assert table.column("output_tokens").to_pylist() == [6] * 10
    assert all(t > 0 for t in table.column("ttft_s").to_pylist())


def test_arrivals():
    gaps = np.diff(loadgen.arrival_offsets(10.0, 4001, burstiness=1.0, seed=1))
    assert gaps.mean() == pytest.approx(0.1, rel=0.1) and gaps.std() == pytest.approx(0.1, rel=0.15)
    bursty = np.diff(loadgen.arrival_offsets(10.0, 4001, burstiness=0.25, seed=1))
    assert bursty.mean() == pytest.approx(0.1, rel=0.15) and bursty.std() > 1.5 * gaps.std()
    assert not loadgen.arrival_offsets(math.inf, 5).any()


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_errors_become_records(reference, protocol):
    for fault, status, text in [("http500", "error", "HTTP 500"), ("drop", "error", "connection"),
                                ("stall", "timeout", "")]:
        target = Target(reference.base_url, "reference", protocol=protocol, timeout_s=0.3,
                                extra_body={"reference_fault": fault})
        res = loadgen.run_loop(loadgen.closed_loop(target, REQS, 2, num_requests=3))
        assert [r.status for r in res.records] == [status] * 3, res.records[0].error
        assert all(text in r.error for r in res.records)
        fields = loadgen.record_fields(res.records[0], res)
        assert fields["status"] == status and fields["concurrency"] == 2
        assert loadgen.summarize_level(res)["errors"] == 3


def test_duration_bound(reference):
    target = Target(reference.base_url, "reference")
    res = loadgen.run_loop(loadgen.closed_loop(target, REQS, 1, num_requests=10_000, duration_s=0.1))
    assert 1 <= len(res.records) < 50


def test_sweep(reference):
    target = Target(reference.base_url, "reference")
    load = {"concurrency": [1, 2], "closed_requests": 4, "rates": [100.0], "open_requests": 4, "warmup": 1}
    results = loadgen.sweep(target, REQS, load)
    assert [(r.mode, r.concurrency) for r in results] == [("closed", 1), ("closed", 2), ("open", None)]
