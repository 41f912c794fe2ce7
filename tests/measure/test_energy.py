"""Energy counters and the energy metrics: RAPL unwrapping, the reasons where no counter answers, and a request's
energy against a counter of known power (the boundaries are the request's own: send, first token, last token)."""
import time

import pytest
from fakes import ART, WL, ScriptedRuntime, plan

from localbench.core import metrics
from localbench.measure import energy
from localbench.measure.executor import run_request
from localbench.measure.session import Measurement
from localbench.measure.store import ResultStore
from localbench.core.types import Request

WATTS = 250.0


def constant_power(watts: float = WATTS) -> energy.Meter:
    """A counter that integrates `watts` over wall time, as a real one integrates the board's power."""
    return energy.Meter("fake", lambda: watts * time.perf_counter())


def rapl_tree(root, values: dict[str, tuple[int, int]]):
    for zone, (now, wrap) in values.items():
        (root / zone).mkdir(parents=True, exist_ok=True)
        (root / zone / "energy_uj").write_text(str(now))
        (root / zone / "max_energy_range_uj").write_text(str(wrap))


def test_rapl_sums_packages_and_unwraps(tmp_path):
    rapl_tree(tmp_path, {"intel-rapl:0": (900, 999), "intel-rapl:1": (10, 999), "intel-rapl:0:0": (5, 999)})
    meter, reason = energy.rapl_meter(tmp_path)
    assert reason == "" and "2 packages" in meter.name
    assert meter.read() == 0
    rapl_tree(tmp_path, {"intel-rapl:0": (100, 999), "intel-rapl:1": (60, 999)})    # package 0 wrapped at 999
    assert meter.read() == pytest.approx((200 + 50) * 1e-6)          # the subzone (intel-rapl:0:0) is not added


def test_no_counter_gives_the_reason(tmp_path):
    assert energy.rapl_meter(tmp_path / "absent") == (None, f"no RAPL: {tmp_path / 'absent'} is absent on this "
                                                               f"machine (no CPU energy counter)")
    meter, reason = energy.meter_for("mps")
    assert meter is None and "mps" in reason


def test_energy_metrics_from_the_three_readings():
    t = metrics.Timeline(0, [10, 20, 30], [1, 1, 1], prompt_tokens=100, output_tokens=3, energy_j=(5.0, 7.0, 11.0))
    m = metrics.compute(t)
    assert (m["energy_j"], m["prefill_energy_j"]) == (6.0, 2.0)
    assert m["decode_j_per_token"] == 2.0 and m["decode_tok_per_j"] == 0.5 and m["prefill_j_per_token"] == 0.02
    bare = metrics.compute(metrics.Timeline(0, [10, 20], [1, 1], 100, 2))
    assert bare["energy_j"] is None and bare["decode_tok_per_j"] is None


def test_request_energy_is_power_times_its_own_time(tmp_path):
    """Decode energy per token at a constant 250 W is 250 W x the time per output token; the request's energy is
    250 W x e2e: the counter is read at the same three moments that bound the timings."""
    runtime = ScriptedRuntime(gap_s=0.02)
    session = runtime.load(ART, "inprocess")
    row = run_request(session, Request("p", tuple(range(50)), "t", 8), 10.0, meter=constant_power())
    assert row["status"] == "ok"
    assert row["decode_j_per_token"] == pytest.approx(WATTS * row["tpot_s"], rel=0.02)
    assert row["energy_j"] == pytest.approx(WATTS * row["e2e_s"], rel=0.02)
    assert row["prefill_j_per_token"] == pytest.approx(WATTS * row["ttft_s"] / 50, rel=0.1)


def test_windows_carry_idle_power_and_rows_the_meter(tmp_path, monkeypatch):
    monkeypatch.setattr(energy, "meter_for", lambda memory: (constant_power(), ""))
    store = ResultStore(tmp_path / "p.jsonl", "k")
    run = Measurement(ScriptedRuntime(), store, "host", {**WL, "idle_power_s": 0.05})
    run.run([ART], plan(n=1, trials=2))
    warm = [r for r in store.rows if r["phase"] == "warm"]
    assert all(r["energy_meter"] == "fake" and r["idle_power_w"] == pytest.approx(WATTS, rel=0.01) for r in warm)
    assert all(w["idle_power_w"] == pytest.approx(WATTS, rel=0.01) for w in store.windows)
    assert run.energy["meter"] == "fake" and run.energy["idle_power_s"] == 0.05


def test_no_counter_leaves_energy_empty_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(energy, "meter_for", lambda memory: (None, "no counter here"))
    store = ResultStore(tmp_path / "p.jsonl", "k")
    run = Measurement(ScriptedRuntime(), store, "host", WL)
    run.run([ART], plan(n=1, trials=1))
    assert all(r["energy_j"] is None and r["energy_meter"] is None for r in store.rows)
    assert run.energy == {"meter": None, "reason": "no counter here"}
