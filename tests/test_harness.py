"""The measure loop with a scripted runtime: row schema, failure rows, timeouts, resume after interrupt."""
import time

import pyarrow as pa
import pytest

from localbench.harness import Cell, Measurement, ResultStore, run_request
from localbench.runtimes.base import Artifact, Chunk, Probe, Request, Runtime, Session, Usage
from localbench.schema import REQUEST_SCHEMA, to_table

ART = Artifact(model="m", format="fake", quant="q", path="/nowhere")


class ScriptedSession(Session):
    def __init__(self, runtime):
        self.runtime = runtime

    def stream(self, request):
        self.runtime.calls += 1
        if request.prompt_id in self.runtime.fail_on:
            raise RuntimeError("boom: forced failure")
        if request.prompt_id in self.runtime.interrupt_on:
            raise KeyboardInterrupt
        for _ in range(request.max_tokens):
            time.sleep(self.runtime.gap_s)
            yield Chunk(tokens=1, text="x")
        yield Usage(prompt_tokens=len(request.prompt_ids), output_tokens=request.max_tokens)


class ScriptedRuntime(Runtime):
    name = "scripted"
    formats = ("fake",)

    def __init__(self, settings=None, fail_on=(), interrupt_on=(), gap_s=0.001):
        super().__init__(settings)
        self.fail_on, self.interrupt_on, self.gap_s, self.calls = set(fail_on), set(interrupt_on), gap_s, 0

    def probe(self):
        return Probe(True, version="1.0", device="cpu")

    def load(self, artifact, transport):
        return ScriptedSession(self)


def plan(n=3, trials=2, max_tokens=4):
    reqs = [Request(f"p{i}", tuple(range(10 + i)), "t", max_tokens) for i in range(n)]
    return [Cell("unique", r.prompt_id, r, t) for t in range(trials) for r in reqs]


WL = {"trials": 2, "warmup": 1, "timeout_s": 30}


def test_rows_match_schema_and_metrics(tmp_path):
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(), store, "host", WL).run([ART], plan())
    table = to_table(store.rows, REQUEST_SCHEMA)
    assert isinstance(table, pa.Table) and table.num_rows == 1 + 6        # one cold row + 3 prompts x 2 trials
    warm = [r for r in store.rows if r["phase"] == "warm"]
    assert all(r["status"] == "ok" and r["output_tokens"] == 4 and len(r["itl_s"]) == 3 for r in warm)
    assert all(r["ttft_s"] > 0 and r["decode_tps"] > 0 and r["cold_start_s"] >= 0 for r in warm)
    assert all(r["peak_rss_bytes"] > 0 for r in warm)


def test_failure_is_a_row_and_the_run_goes_on(tmp_path):
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(fail_on={"p1"}), store, "host", WL).run([ART], plan())
    by_status = {r["prompt_id"]: r["status"] for r in store.rows if r["phase"] == "warm"}
    assert by_status == {"p0": "ok", "p1": "error", "p2": "ok"}
    failed = next(r for r in store.rows if r["prompt_id"] == "p1")
    assert "boom: forced failure" in failed["error"]


def test_timeout_row():
    session = ScriptedRuntime(gap_s=0.05).load(ART, "inprocess")
    fields = run_request(session, Request("p", (1, 2), "t", 10), timeout_s=0.1)
    assert fields["status"] == "timeout" and "timeout_s" in fields["error"]


def test_short_output_is_flagged():
    class Short(ScriptedSession):
        def stream(self, request):
            yield Chunk(1, "x")
            yield Usage(2, 1)
    fields = run_request(Short(ScriptedRuntime()), Request("p", (1, 2), "t", 5), 10)
    assert fields["status"] == "short"
    fields = run_request(Short(ScriptedRuntime()), Request("p", (1, 2), "t", 0), 10)
    assert fields["status"] == "ok" and fields["error"] == "1 tokens generated, 0 forced"


def test_unavailable_runtime_gives_reason_rows(tmp_path):
    class Missing(ScriptedRuntime):
        def probe(self):
            return Probe(False, "libfoo is not installed: pip install foo")
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(Missing(), store, "host", WL).run([ART], plan())
    assert len(store.rows) == 6 and {r["status"] for r in store.rows} == {"unavailable"}
    assert store.rows[0]["error"] == "libfoo is not installed: pip install foo"


def test_resume_after_interrupt(tmp_path):
    path = tmp_path / "p.jsonl"
    first = ScriptedRuntime(interrupt_on={"p2"})
    with pytest.raises(KeyboardInterrupt):
        Measurement(first, ResultStore(path, "k"), "host", WL).run([ART], plan())
    kept = ResultStore(path, "k").rows
    assert [r["prompt_id"] for r in kept] == ["p0", "p0", "p1"]            # cold row, then p0, p1 of trial 0
    second = ScriptedRuntime()
    store = ResultStore(path, "k")
    Measurement(second, store, "host", WL).run([ART], plan())
    assert second.calls == 1 + 4                                           # warm-up + the 4 cells not yet done
    assert len(store.rows) == 7
    keys = [ResultStore.cell_key(r) for r in store.rows]
    assert len(set(keys)) == len(keys)


def test_changed_config_discards_partial_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    Measurement(ScriptedRuntime(), ResultStore(path, "k1"), "host", WL).run([ART], plan())
    assert ResultStore(path, "k2").rows == []
