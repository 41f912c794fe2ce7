"""`dvc exp show` stays readable: the calibration metrics keep p50 errors at the lowest and highest concurrency."""
from localbench.measure.calibration import headline_errors


def test_calibration_headline_keeps_p50_at_the_ends():
    levels = {f"c{c}": {"ttft_err_p50_ms": c, "ttft_err_p99_ms": 9, "itl_err_p50_ms": c / 2, "itl_err_p99_ms": 9}
              for c in (1, 8, 64)}
    full = {path: {p: levels for p in ("openai", "ollama")} for path in ("single_stream", "loadgen")}
    small = headline_errors(full)
    leaves = [v for path in small.values() for proto in path.values() for lvl in proto.values() for v in lvl]
    assert len(leaves) == 2 * 2 * 2 * 2                                    # 16 columns instead of 48
    assert small["loadgen"]["ollama"] == {"c1": {"ttft_err_p50_ms": 1, "itl_err_p50_ms": 0.5},
                                          "c64": {"ttft_err_p50_ms": 64, "itl_err_p50_ms": 32.0}}
