"""Adaptive trials: the plan's trials over distinct prompts, the stopping rule, rounds in alternating order, the
seeded interleaving with a warm-up per length, and a drifting window re-run once and flagged."""
from __future__ import annotations

import itertools

import pandas as pd
from fakes import ART, WL, ScriptedRuntime

from localbench.core.types import Artifact, Request
from localbench.measure.plan import Cell, plan_of
from localbench.measure.schedule import Rule, next_trials, stop_reason
from localbench.measure.session import Measurement
from localbench.measure.store import ResultStore

RULE = Rule(min_trials=6, max_trials=9, target_rel_ci=0.05, cell_time_cap_s=100, rounds=2)


def prompts(kinds=("unique",), n=3, lengths=(64,)) -> pd.DataFrame:
    rows = []
    for kind, length in itertools.product(kinds, lengths):
        for i in range(n):
            for turn in range(2 if kind == "chat" else 1):
                pid = f"chat-{length}-{i}-t{turn}" if kind == "chat" else f"{kind}-{length}-{i}"
                rows.append({"workload": kind, "prompt_id": pid, "target_tokens": length, "ids": [i, turn],
                             "text": "x", "chat": kind == "chat", "messages": "null", "session": i, "turn": turn})
    return pd.DataFrame(rows)


def rows_of(values, trials=None, window="w", status="ok", e2e=1.0):
    return [{"trial": t, "status": status, "decode_tps": v, "ttft_s": v and v / 100, "window": window, "e2e_s": e2e}
            for t, v in zip(trials or range(len(values)), values)]


def test_trial_t_takes_the_t_th_distinct_prompt_and_reuse_cells_are_fixed():
    wl = {"types": ["unique", "chat"], "lengths": [64], "min_trials": 2, "max_trials": 5, "max_tokens": 4,
          "cache_reuse": ["chat"]}
    plan = plan_of(prompts(("unique", "chat")), wl, "x")
    unique = [(c.trial, c.prompt_id) for c in plan if c.workload == "unique"]
    assert unique == [(t, f"unique-64-{t % 3}") for t in range(5)]          # max_trials candidates, round robin
    chat = [(c.trial, c.prompt_id, c.order) for c in plan if c.workload == "chat"]
    assert chat == [(0, "chat-64-0-t0", 0), (0, "chat-64-0-t1", 1), (1, "chat-64-1-t0", 0), (1, "chat-64-1-t1", 1)]
    assert all(c.fixed for c in plan if c.workload == "chat") and not any(c.fixed for c in plan
                                                                           if c.workload == "unique")


def test_stopping_rule():
    steady = [100, 101, 99, 100, 102, 98]
    assert stop_reason(RULE, False, 9, rows_of(steady[:5])) is None                      # below min_trials
    assert stop_reason(RULE, False, 9, rows_of(steady)) == "target interval"
    wide = [100, 130, 80, 100, 120, 90]
    assert stop_reason(RULE, False, 9, rows_of(wide)) is None                           # interval too wide
    assert stop_reason(RULE, False, 9, rows_of(wide + [100, 110, 95])) == "max trials"
    assert stop_reason(RULE, False, 9, rows_of(wide[:2], e2e=60)) == "time cap"
    assert stop_reason(RULE, True, 2, rows_of(wide[:2])) == "planned trials"
    assert stop_reason(RULE, False, 9, rows_of([None] * 3, status="error")) == "failed"
    flagged = [{**r, "drift_flag": True} for r in rows_of(steady)]                       # flagged trials do not count
    assert stop_reason(RULE, False, 9, flagged) is None


def test_next_trials_spreads_the_minimum_over_the_rounds():
    cells = [Cell("unique", f"p{t}", Request(f"p{t}", (1,), "t", 4), t) for t in range(9)]
    assert next_trials(RULE, cells, [], set()) == [0, 1, 2]                  # 6 over 2 rounds
    assert next_trials(RULE, cells, rows_of([100, 130, 80]), {0, 1, 2}) == [3, 4, 5]


def measured(tmp_path, wl, artifacts=(ART,), kinds=("unique",), lengths=(10, 11), warmups=None):
    wl = {**WL, "types": list(kinds), "lengths": list(lengths), "max_tokens": 4, "cache_reuse": [], **wl}
    frame = prompts(kinds, n=4, lengths=lengths)
    frame["ids"] = [list(range(int(n))) for n in frame["target_tokens"]]
    runtime = ScriptedRuntime()
    run = Measurement(runtime, ResultStore(tmp_path / "p.jsonl", "k"), "host", wl, warmups=warmups)
    run.run(list(artifacts), plan_of(frame, wl, "scripted"))
    return runtime, run


def test_time_cap_stops_a_cell_early_and_says_so(tmp_path):
    _, run = measured(tmp_path, {"min_trials": 6, "max_trials": 9, "rounds": 2, "cell_time_cap_s": 1e-6})
    assert {(s["target_tokens"], s["trials"], s["stop"]) for s in run.stops} == {(10, 1, "time cap"),
                                                                                (11, 1, "time cap")}
    assert len(run.store.windows) == 1          # checked before every trial, in the window too: no round 2


def test_rounds_alternate_the_sessions_and_each_load_has_a_cold_row(tmp_path):
    other = Artifact(model="m", format="fake", quant="q2", path=__file__)
    runtime, run = measured(tmp_path, {"min_trials": 4, "max_trials": 4, "rounds": 2}, artifacts=(ART, other))
    assert runtime.loads == ["q", "q2", "q2", "q"]                          # A B, then B A
    assert sorted((r["quant"], r["trial"]) for r in run.store.rows if r["phase"] == "cold") == \
        [("q", 0), ("q", 1), ("q2", 0), ("q2", 1)]
    assert {(s["quant"], s["trials"], s["stop"]) for s in run.stops} == {("q", 4, "max trials"),
                                                                        ("q2", 4, "max trials")}


def test_lengths_interleave_in_a_seeded_order_each_warmed_up_first(tmp_path):
    warm = {n: Request(f"w{n}", tuple(range(n)), "t", 4) for n in (10, 11)}
    wl = {"min_trials": 4, "max_trials": 4, "window_warmup_max_tokens": 11}
    first, _ = measured(tmp_path / "a", wl, warmups=warm)
    second, _ = measured(tmp_path / "b", wl, warmups=warm)
    assert first.seen == second.seen                                         # seeded: the same order
    measured_ids = [p for p in first.seen if not p.startswith("w")]
    lengths = [p.split("-")[1] for p in measured_ids]
    assert lengths != sorted(lengths)                                        # not one length after the other
    assert first.seen[0] == "w10"                                            # the session warm-up (cold row)
    assert first.seen.index("w11") < first.seen.index(next(p for p in first.seen if p.startswith("unique-11")))


def test_a_window_that_drifts_is_rerun_once_and_flagged(tmp_path, monkeypatch):
    speeds = iter([(50.0, 100.0), (50.0, 60.0), (50.0, 100.0), (50.0, 99.0)])   # 40 % move, then steady
    monkeypatch.setattr(Measurement, "probe_speed", lambda self: next(speeds))
    _, run = measured(tmp_path, {"min_trials": 2, "max_trials": 2, "drift_tolerance": 0.1}, lengths=(10,))
    first, rerun = run.store.windows
    assert first["flagged"] and not rerun["flagged"] and rerun["rerun_of"] == first["window"]
    rows = [r for r in run.store.rows_with_drift() if r["phase"] == "warm"]
    assert [r["drift_flag"] for r in rows] == [True, True, False, False]
    assert [r["rerun"] for r in rows] == [False, False, True, True]
    assert [(s["trials"], s["stop"]) for s in run.stops] == [(2, "max trials")]


def test_a_server_session_without_a_load_target_is_loaded_once_per_round(tmp_path):
    """A sweep is pending but the session offers no load-generator target (Ollama's /v1 here): it is tried in the
    first round only, so the rounds end (they once reloaded such a session forever)."""
    class Served(ScriptedRuntime):
        transports = ("server",)
    runtime = Served({"transports": ["server"]})
    wl = {**WL, "types": ["unique"], "lengths": [10], "max_tokens": 4, "cache_reuse": [], "min_trials": 2,
          "max_trials": 2}
    frame = prompts(("unique",), n=2, lengths=(10,))
    frame["ids"] = [list(range(10))] * len(frame)
    run = Measurement(runtime, ResultStore(tmp_path / "p.jsonl", "k"), "host", wl,
                      {"enabled": True, "quants": []})
    run.run([ART], plan_of(frame, wl, "scripted"))
    assert runtime.loads == ["q"] and [s["stop"] for s in run.stops] == ["max trials"]
