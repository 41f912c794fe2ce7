"""The measure loop with a scripted runtime: row schema, failure rows, timeouts, resume after interrupt,
boundaries, token reconciliation, windows with drift probes, in-process memory above the baseline."""
import threading
import time

import pyarrow as pa
import pytest
from fakes import ART, WL, HangingRuntime, ScriptedRuntime, ScriptedSession, plan

from localbench.core.schema import REQUEST_SCHEMA, to_table
from localbench.core.types import Artifact, Chunk, Probe, Request, Sent, Usage
from localbench.measure.executor import run_request, stop_caller
from localbench.measure.session import Measurement
from localbench.measure.store import ResultStore

def test_rows_match_schema_and_metrics(tmp_path):
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(), store, "host", WL).run([ART], plan())
    table = to_table(store.rows, REQUEST_SCHEMA)
    assert isinstance(table, pa.Table) and table.num_rows == 1 + 6        # one cold row + 3 prompts x 2 trials
    warm = [r for r in store.rows if r["phase"] == "warm"]
    assert all(r["status"] == "ok" and r["output_tokens"] == 4 and len(r["itl_s"]) == 3 for r in warm)
    # the scripted runtime sleeps gap_s = 1 ms before each token: TTFT is at least that, decode at most 1000 tok/s
    assert all(0.001 <= r["ttft_s"] < 0.5 and 5 < r["decode_tps"] <= 1000 and 0 <= r["cold_start_s"] < 1 for r in warm)
    assert all(abs(r["e2e_s"] - r["ttft_s"] - sum(r["itl_s"])) < 1e-6 for r in warm)
    assert all(r["flag"] is None for r in warm)


def test_inprocess_memory_is_the_runtimes_not_the_harness(tmp_path):
    """64 MiB used by the "model" during a request: measured as ~64 MiB, not as the whole test process."""
    import psutil
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(ballast_mib=64, gap_s=0.02), store, "host", WL).run([ART], plan(n=1, trials=1))
    peaks = [r["peak_rss_bytes"] for r in store.rows]
    assert all(48 * 2**20 < p < 200 * 2**20 for p in peaks), peaks
    assert max(peaks) < psutil.Process().memory_info().rss / 2


def test_drift_probe_buffer_is_not_counted_as_the_runtimes_memory(tmp_path, monkeypatch):
    """The probe's matrix (kept between probes) exists before the first in-process baseline is taken."""
    from localbench.core import hardware
    monkeypatch.setattr(hardware, "_BUFFERS", {})
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(gap_s=0.02), store, "host", {**WL, "drift_probe_mib": 192}).run(
        [ART], plan(n=1, trials=1))
    assert all(r["peak_rss_bytes"] < 64 * 2**20 for r in store.rows), [r["peak_rss_bytes"] for r in store.rows]


def test_windows_are_rounds_and_carry_both_drift_probes(tmp_path):
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(), store, "host", {**WL, "rounds": 2}).run([ART], plan())
    assert [w["group"] for w in store.windows] == ["round 1", "round 2"]     # one window per session load
    assert all(len(w["probes_gbps"]) == len(w["probes_gflops"]) == 2 and min(w["probes_gflops"]) > 1
               for w in store.windows)
    rows = store.rows_with_drift()
    warm = [r for r in rows if r["phase"] == "warm"]
    assert {r["window"] for r in warm} == {w["window"] for w in store.windows}
    assert all(r["probe_gbps"] > 0.1 and 0 <= r["window_drift"] < 1 and r["drift_flag"] is False for r in warm)
    assert [r["trial"] for r in rows if r["phase"] == "cold"] == [0, 1]      # a cold row per load
    again = ResultStore(tmp_path / "p.jsonl", "k")                   # windows survive a resume
    assert len(again.windows) == 2 and len(again.rows) == len(store.rows)


def test_each_window_is_warmed_up_once_at_its_length_unrecorded(tmp_path):
    """Session warm-up w10 (recorded as the cold row) also serves window 10; window 11 gets w11 unrecorded."""
    runtime, store = ScriptedRuntime(), ResultStore(tmp_path / "p.jsonl", "k")
    warm = {n: Request(f"w{n}", tuple(range(n)), "t", 4) for n in (10, 11)}
    Measurement(runtime, store, "host", {**WL, "window_warmup_max_tokens": 11}, warmups=warm).run([ART], plan())
    assert runtime.calls == 1 + 1 + 6                     # session warm-up, window 11's warm-up, 6 cells
    assert [r["prompt_id"] for r in store.rows if r["phase"] == "cold"] == ["w10"]
    assert not any(r["prompt_id"] == "w11" for r in store.rows)


def test_session_warmup_output_can_be_shortened(tmp_path):
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(), store, "host", {**WL, "warmup_max_tokens": 2}).run([ART], plan())
    (cold,) = [r for r in store.rows if r["phase"] == "cold"]
    assert cold["output_tokens"] == 2 and cold["max_tokens"] == 2 and cold["flag"] is None


def test_server_boundary_is_the_sent_stamp():
    """Time spent before the request is on the wire (building a client, connecting) is not TTFT."""
    class Server(ScriptedSession):
        pid = 1
        def stream(self, request):
            time.sleep(0.2)                                    # e.g. building an HTTP client
            sent = time.perf_counter_ns()
            yield Sent(sent)
            time.sleep(0.05)
            yield Chunk(1, "x")
            yield Usage(2, 1)
    fields = run_request(Server(ScriptedRuntime()), Request("p", (1, 2), "t", 1), 10)
    assert 0.045 < fields["ttft_s"] < 0.1


def test_chunk_tokens_are_reconciled_with_usage():
    class Miscounted(ScriptedSession):
        def stream(self, request):
            yield Chunk(1, "xy")
            yield Usage(2, 2)
    fields = run_request(Miscounted(ScriptedRuntime()), Request("p", (1, 2), "t", 2), 10)
    assert fields["status"] == "ok" and "chunks carried 1 tokens, the runtime reports 2" in fields["flag"]


def test_external_server_reports_no_memory():
    class External(ScriptedSession):
        external = True
    fields = run_request(External(ScriptedRuntime()), Request("p", (1, 2), "t", 2), 10)
    assert fields["status"] == "ok" and fields.get("peak_rss_bytes") is None


def test_failure_is_a_row_and_the_run_goes_on(tmp_path):
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(ScriptedRuntime(fail_on={"p1"}), store, "host", WL).run([ART], plan())
    by_status = {r["prompt_id"]: r["status"] for r in store.rows if r["phase"] == "warm"}
    assert by_status == {"p0": "ok", "p1": "error", "p2": "ok"}
    failed = next(r for r in store.rows if r["prompt_id"] == "p1")
    assert "boom: forced failure" in failed["error"]


def test_only_a_failed_request_is_followed_by_a_request_checking_the_session_answers(tmp_path):
    """After an error (or timeout, oom) one one-token request checks that the session still answers; a `short` answer
    answered, and an extra request would reset what an in-process session keeps for a chat's next turn."""
    class ShortOnP1(ScriptedSession):
        def stream(self, request):
            if request.prompt_id != "p1":
                yield from super().stream(request)
                return
            self.runtime.calls += 1
            yield Chunk(tokens=1, text="x")
            yield Usage(prompt_tokens=len(request.prompt_ids), output_tokens=1)

    class ShortRuntime(ScriptedRuntime):
        def load(self, artifact, transport):
            return ShortOnP1(self)
    planned = plan()                                   # 3 prompts x 2 trials, after one warm-up request
    short, store = ShortRuntime(), ResultStore(tmp_path / "s.jsonl", "k")
    Measurement(short, store, "host", WL).run([ART], planned)
    assert sorted(r["status"] for r in store.rows if r["prompt_id"] == "p1") == ["short", "short"]
    assert short.calls == 1 + len(planned)
    failing = ScriptedRuntime(fail_on={"p1"})
    Measurement(failing, ResultStore(tmp_path / "f.jsonl", "k"), "host", WL).run([ART], planned)
    assert failing.calls == 1 + len(planned) + 2       # one check after each of p1's two errors


def test_a_session_streams_on_one_long_lived_thread():
    """Every request of a session runs on the same thread (a fresh one per request cost llama.cpp's OpenMP
    build a new thread team per prefill), not the measuring thread; it ends when the session is closed."""
    class Recording(ScriptedSession):
        threads: list = []

        def stream(self, request):
            self.threads.append(threading.current_thread())
            yield from super().stream(request)
    session = Recording(ScriptedRuntime())
    for _ in range(3):
        assert run_request(session, Request("p", (1, 2), "t", 2), 10)["status"] == "ok"
    first = session.threads[0]
    assert session.threads == [first] * 3 and first is not threading.current_thread()
    stop_caller(session)
    first.join(timeout=5)
    assert not first.is_alive()


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
    assert fields["status"] == "ok" and fields["flag"] == "1 tokens generated, 0 forced"


def test_unavailable_runtime_gives_reason_rows(tmp_path):
    class Missing(ScriptedRuntime):
        def probe(self):
            return Probe(False, "libfoo is not installed: pip install foo")
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(Missing(), store, "host", WL).run([ART], plan())
    assert len(store.rows) == 3 and {r["status"] for r in store.rows} == {"unavailable"}     # a row per prompt
    assert store.rows[0]["error"] == "libfoo is not installed: pip install foo"


def test_resume_after_interrupt(tmp_path):
    path = tmp_path / "p.jsonl"
    first = ScriptedRuntime(interrupt_on={"p2"})
    with pytest.raises(KeyboardInterrupt):
        Measurement(first, ResultStore(path, "k"), "host", WL).run([ART], plan())
    kept = ResultStore(path, "k").rows
    assert kept[0]["phase"] == "cold" and "p2" not in [r["prompt_id"] for r in kept]
    second = ScriptedRuntime()
    store = ResultStore(path, "k")
    Measurement(second, store, "host", WL).run([ART], plan())
    assert second.calls == 1 + 6 - (len(kept) - 1)                         # warm-up + the cells not yet done
    assert len(store.rows) == 7
    keys = [ResultStore.cell_key(r) for r in store.rows]
    assert len(set(keys)) == len(keys)


def test_changed_config_discards_partial_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    Measurement(ScriptedRuntime(), ResultStore(path, "k1"), "host", WL).run([ART], plan())
    assert ResultStore(path, "k2").rows == []


def test_hang_inside_a_request_is_a_timeout_row_and_the_next_artifact_runs(tmp_path):
    """No item ever arrives for p1: a timeout row after timeout_s, the session's remaining cells are error rows
    saying why, and the next artifact is measured normally."""
    runtime = HangingRuntime()
    other = Artifact(model="m", format="fake", quant="q2", path=__file__)
    store = ResultStore(tmp_path / "p.jsonl", "k")
    t0 = time.monotonic()
    try:
        Measurement(runtime, store, "host", {**WL, "timeout_s": 0.3}).run([ART, other], plan(n=3, trials=1))
    finally:
        runtime.release.set()
    assert time.monotonic() - t0 < 10
    first = {r["prompt_id"]: (r["status"], r["error"]) for r in store.rows if r["quant"] == "q" and r["phase"] == "warm"}
    assert first["p0"] == ("ok", None)
    assert first["p1"][0] == "timeout" and "no answer for 0.3 s" in first["p1"][1]
    assert first["p2"][0] == "error" and "hung past workload.timeout_s=0.3" in first["p2"][1]
    assert runtime.closed == ["q2"]                  # the hung in-process session is left, not closed under it
    second = {r["prompt_id"]: r["status"] for r in store.rows if r["quant"] == "q2" and r["phase"] == "warm"}
    assert second == {"p0": "ok", "p1": "ok", "p2": "ok"}


def test_torn_last_line_is_dropped_with_a_warning_and_appends_stay_valid(tmp_path, caplog):
    path = tmp_path / "p.jsonl"
    Measurement(ScriptedRuntime(), ResultStore(path, "k"), "host", WL).run([ART], plan(n=1, trials=1))
    whole = path.read_text()
    path.write_text(whole + '{"format": "fake", "quant": "q", "prompt_')    # killed while writing a row
    store = ResultStore(path, "k")
    assert "last line is incomplete" in caplog.text
    assert len(store.rows) == 2 and path.read_text() == whole             # the torn bytes are cut off
    store.append({"format": "fake", "quant": "q", "transport": "inprocess", "prompt_id": "x", "trial": 0,
                  "phase": "warm"})
    assert len(ResultStore(path, "k").rows) == 3                          # the next line is whole JSON
