"""The fault matrix (README "Fault matrix"): each fault a user can meet, and the row or line it must produce.

Every case is a real fault: a runtime probe that fails, a deleted or corrupted file, a child process under a
memory limit, a server killed mid-sweep, kill -9 of a measure stage, ENOSPC from /dev/full, a bad value.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from stage_project import ROOT, make_project, partial_rows, start_measure
from fakes import ART, WL, ScriptedRuntime, plan

from localbench.artifacts.integrity import record
from localbench.core.schema import REQUEST_SCHEMA, to_table
from localbench.core.types import Artifact
from localbench.measure import loadgen
from localbench.measure.run import salvage
from localbench.measure.session import Measurement, load_runtime
from localbench.measure.store import ResultStore
from localbench.runtimes.reference import ReferenceRuntime
from localbench.transport import servers

TESTS = Path(__file__).resolve().parents[1]      # tests/: fakes.py for the subprocess


def by_status(rows, phase="warm"):
    return {(r["quant"], r["prompt_id"], r["trial"]): r["status"] for r in rows if r["phase"] == phase}


def test_runtime_not_installed_gives_unavailable_rows_with_the_reason(tmp_path):
    runtime = load_runtime("mlc", {"transports": ["inprocess"]})      # the real module and probe
    if runtime.probe().available:
        pytest.skip("MLC-LLM is installed here")
    store = ResultStore(tmp_path / "p.jsonl", "k")
    art = tmp_path / "model"
    art.mkdir()
    Measurement(runtime, store, "host", WL).run([Artifact("m", "mlc", "q4f16_1", str(art))], plan(n=2, trials=1))
    assert [r["status"] for r in store.rows] == ["unavailable", "unavailable"]
    assert "mlc" in store.rows[0]["error"].lower() and store.rows[0]["error"] == runtime.probe().reason


def test_missing_artifact_is_an_error_row_naming_the_fix(tmp_path):
    runtime = ScriptedRuntime()
    gone = Artifact("m", "fake", "q", str(tmp_path / "deleted.gguf"))
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(runtime, store, "host", WL).run([gone], plan(n=1, trials=1))
    assert runtime.calls == 0 and store.rows[0]["status"] == "error"
    assert store.rows[0]["error"].startswith("artifact missing:") and "dvc repro convert-fake" in store.rows[0]["error"]


def test_corrupt_artifact_is_caught_before_load(tmp_path):
    """The convert stage records a single-file artifact's sha256; one flipped byte stops the load."""
    gguf = tmp_path / "Q4_K_M" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    (gguf.parent / "artifact.json").write_text(json.dumps(record({"status": "ok", "quant": "Q4_K_M"}, gguf)))
    good = Artifact("m", "fake", "Q4_K_M", str(gguf))
    runtime = ScriptedRuntime()
    Measurement(runtime, ResultStore(tmp_path / "ok.jsonl", "k"), "host", WL).run([good], plan(n=1, trials=1))
    assert runtime.calls == 2                                          # warm-up + the cell: checksum matched
    data = bytearray(gguf.read_bytes())
    data[100] ^= 0xFF
    gguf.write_bytes(bytes(data))
    runtime, store = ScriptedRuntime(), ResultStore(tmp_path / "bad.jsonl", "k")
    Measurement(runtime, store, "host", WL).run([good], plan(n=1, trials=1))
    assert runtime.calls == 0 and store.rows[0]["status"] == "error"
    assert store.rows[0]["error"].startswith("corrupt artifact: sha256 of")


def test_out_of_memory_in_a_memory_limited_child_is_an_oom_row(tmp_path):
    """A measure run in a child process whose address space is capped (RLIMIT_AS); the model's allocation
    fails there and the request becomes an `oom` row while the run goes on."""
    script = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(TESTS)!r})
        from fakes import ART, WL, ScriptedRuntime, plan
        from localbench.measure.session import Measurement
        from localbench.measure.store import ResultStore
        import psutil
        vm = psutil.Process().memory_info().vms
        resource.setrlimit(resource.RLIMIT_AS, (vm + 512 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
        store = ResultStore({str(tmp_path / 'p.jsonl')!r}, "k")
        Measurement(ScriptedRuntime(ballast_mib=2048), store, "host", WL).run([ART], plan(n=2, trials=1))
        print(json.dumps([(r["status"], r["error"]) for r in store.rows]))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.splitlines()[-1])
    assert len(rows) == 3 and {s for s, _ in rows} == {"oom"}, rows          # cold row + 2 cells
    assert "MemoryError" in rows[1][1]


def test_request_timeout_on_a_server_that_stops_answering(tmp_path, monkeypatch):
    """The reference server sends one token, then nothing for 30 s: a timeout row after workload.timeout_s;
    the session is abandoned (its server stopped), the remaining cells are error rows, and the stage goes on."""
    stop = servers.Server.stop
    monkeypatch.setattr(servers.Server, "stop", lambda self, grace_s=1.0: stop(self, grace_s=1.0))  # test speed
    runtime = load_runtime("reference", {"transports": ["server"], "ttft_ms": 5, "itl_ms": 30000, "tokens": 4,
                                         "log_dir": str(tmp_path)})
    store = ResultStore(tmp_path / "p.jsonl", "k")
    t0 = time.monotonic()
    Measurement(runtime, store, "host", {**WL, "warmup": 0, "timeout_s": 0.5}).run(
        [Artifact("reference", "server", "n/a", "")], plan(n=2, trials=1))
    assert time.monotonic() - t0 < 20
    statuses = [(r["status"], r["error"]) for r in store.rows]
    assert statuses[0][0] == "timeout" and "workload.timeout_s=0.5" in statuses[0][1]
    assert statuses[1][0] == "error" and "hung past workload.timeout_s=0.5" in statuses[1][1]


def test_a_session_that_answers_nothing_after_a_failure_is_loaded_again(tmp_path):
    """A failed request after which the session fails every request (mlx_lm.server once an out-of-memory prefill
    killed its generation thread) ends the window with that trial: the session is loaded again for the trials it
    did not run, so only the failing prompt has error rows."""
    runtime = ScriptedRuntime(breaks_on={"p1"})
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(runtime, store, "host", WL).run([ART], plan())
    statuses = by_status(store.rows)
    assert statuses == {("q", p, t): "error" if p == "p1" else "ok" for p in ("p0", "p1", "p2") for t in (0, 1)}
    assert not any("generation thread died" in (r["error"] or "") for r in store.rows)
    assert len(runtime.loads) >= 2          # a window ends with the trial of p1's failure


def test_a_server_killed_mid_window_is_started_again_for_the_rest(tmp_path):
    """The reference server killed (SIGKILL) as a request is sent: that request is an error row, the one-token check
    finds nothing listening, the window ends and the next round starts a new server for every request not run."""
    killed = []

    class KillsItsServerOnce(ReferenceRuntime):
        def load(self, artifact, transport):
            session = super().load(artifact, transport)
            stream = session.stream

            def killing(request):
                if request.prompt_id == "p1" and not killed:
                    killed.append(session.pid)
                    os.kill(session.pid, signal.SIGKILL)
                    session.server.proc.wait(10)
                yield from stream(request)
            session.stream = killing
            return session
    runtime = KillsItsServerOnce({"ttft_ms": 2.0, "itl_ms": 1.0, "log_dir": str(tmp_path)})
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(runtime, store, "host", WL).run([ART], plan())
    statuses = sorted(by_status(store.rows).values())
    assert len(killed) == 1 and statuses == ["error"] + ["ok"] * 5, by_status(store.rows)
    assert len({r["window"] for r in store.rows if r["phase"] == "warm"}) >= 2


def test_server_killed_mid_sweep_gives_error_rows_and_the_next_artifact_runs(tmp_path, monkeypatch):
    load = {"enabled": True, "quants": [], "concurrency": [1, 2], "closed_requests": 12, "rates": [],
            "open_requests": 1, "duration_s": 30, "warmup": 0, "seed": 0, "max_tokens": 8, "burstiness": 1.0}
    runtime = load_runtime("reference", {"transports": ["server"], "ttft_ms": 5, "itl_ms": 20, "tokens": 8,
                                         "log_dir": str(tmp_path)})
    run = Measurement(runtime, ResultStore(tmp_path / "p.jsonl", "k"), "host", {**WL, "warmup": 0}, load)
    sweep = run.run_load

    def killed_mid_sweep(session, artifact, *args):
        if artifact.quant == "first":
            real = loadgen.sweep

            def sweep_then_kill(*a, **kw):
                """kill -9 the server 1 s into the sweep itself: not counted from before the probes around it,
                which a loaded machine slows (the kill then came before the first answer)."""
                threading.Timer(1.0, lambda: os.killpg(session.server.pid, signal.SIGKILL)).start()
                return real(*a, **kw)
            monkeypatch.setattr(loadgen, "sweep", sweep_then_kill)
        else:
            monkeypatch.undo()
        return sweep(session, artifact, *args)
    run.run_load = killed_mid_sweep
    arts = [Artifact("reference", "server", q, "") for q in ("first", "second")]
    run.run(arts, plan(n=2, trials=1))
    first = [r["status"] for r in run.store.rows if r["phase"] == "load" and r["quant"] == "first"]
    second = [r["status"] for r in run.store.rows if r["phase"] == "load" and r["quant"] == "second"]
    assert "ok" in first and first.count("error") >= 6, first        # ~1 s of 2 x 12 x 0.17 s were served
    to_table(run.store.rows_with_drift(), REQUEST_SCHEMA)            # every row, sweep rows too, fits the schema
    assert all(isinstance(v, float) for w in run.store.windows for v in w["probes_gbps"] + w["probes_gflops"])
    assert first.index("error") > first.index("ok") and set(first[first.index("error"):]) == {"error"}
    assert second == ["ok"] * 24
    assert {r["status"] for r in run.store.rows if r["phase"] == "warm"} == {"ok"}


def test_kill_9_mid_measure_then_resume_loses_no_row(tmp_path):
    project = make_project(tmp_path, n_prompts=3, trials=18, itl_ms=20)     # one cell, 18 trials over 3 prompts
    proc = start_measure(project)
    partial = project / "data/partial/reference.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (partial.exists() and len(partial_rows(project)) >= 6):
        time.sleep(0.05)
    servers = [p for p in psutil.Process(proc.pid).children(recursive=True)]
    proc.kill()                                                        # kill -9: no handler, no atexit
    proc.wait()
    for p in servers:                                                  # kill -9 leaves its server: ours to stop
        p.kill()
    with open(partial, "a") as f:
        f.write('{"format": "server", "quant": "n/a", "pro')          # as if killed in the middle of a write
    before = [json.loads(line) for line in partial.read_text().splitlines()[1:-1]]
    kept = {(r["prompt_id"], r["trial"], r["phase"]) for r in before if r.get("record") != "window"}
    assert 6 <= len(kept) < 19
    proc = start_measure(project)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "last line is incomplete" in err and "resuming" in err
    rows = pd.read_parquet(project / "data/raw/reference/requests.parquet")
    keys = list(zip(rows.prompt_id, rows.trial, rows.phase))
    assert len(keys) == len(set(keys)) == 1 + 18                        # one cold row, every trial once
    assert kept <= set(keys) and set(rows.status) == {"ok"}


def test_a_cut_short_stage_keeps_its_rows_as_a_salvaged_raw_output(tmp_path, monkeypatch):
    """A GPU lease that ends mid-stage: data/raw/<runtime>/ from the partial rows, marked `cut_short`; the partial
    file stays for a resume."""
    monkeypatch.chdir(tmp_path)
    assert not salvage("fake", tmp_path / "data/raw/fake")                  # nothing measured: nothing written
    store = ResultStore(tmp_path / "data/partial/fake.jsonl", "k")
    Measurement(ScriptedRuntime(), store, "host", WL).run([ART], plan(n=2, trials=2))
    assert salvage("fake", tmp_path / "data/raw/fake")
    rows = pd.read_parquet(tmp_path / "data/raw/fake/requests.parquet")
    assert len(rows) == len(store.rows) and set(rows.status) == {"ok"} and "drift_flag" in rows
    extra = json.loads((tmp_path / "data/raw/fake/extra.json").read_text())
    assert extra["runtime"] == "fake" and f"{len(store.rows)} rows kept" in extra["cut_short"]
    assert (tmp_path / "data/partial/fake.jsonl").exists()


def test_disk_full_on_the_partial_file_is_one_clear_line(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    store = ResultStore(tmp_path / "p.jsonl", "k")
    store.path = Path("/dev/full")                                    # every write: ENOSPC from the kernel
    with pytest.raises(SystemExit) as stop:
        Measurement(ScriptedRuntime(), store, "host", WL).run([Artifact("m", "fake", "q", __file__)], plan())
    line = str(stop.value)
    assert line == ("cannot append to /dev/full: No space left on device; the 0 rows before it are kept: "
                    "free space and rerun to resume")


def test_malformed_config_stops_the_measure_stage_in_one_line(tmp_path):
    project = make_project(tmp_path)
    cfg = yaml.safe_load((project / "params.yaml").read_text())
    cfg["load"]["slo"]["ttft"] = 2.0                                   # a typo in an SLO name
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    proc = start_measure(project)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err
    assert err.strip() == "params.yaml: unknown key load.slo.ttft (allowed there: ttft_s, tpot_s, e2e_s; conf/load/)"
    assert not (project / "data/raw").exists()
