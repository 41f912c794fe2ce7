"""Self-calibration: the error against the reference server is computed for both client paths and loosely
bounded (not timed: the tight bounds are the calibrate stage's report on a quiet machine)."""
import math

from localbench.measure import calibration


def test_calibration_error_computed(tmp_path):
    cfg = {"concurrency": [1, 4], "ttft_ms": 5.0, "itl_ms": 2.0, "tokens": 8, "requests_per_level": 8,
           "warmup": 1, "protocols": ["openai", "ollama"], "single_stream_requests": 6}
    df = calibration.measure(cfg, tmp_path)
    assert (df.status == "ok").all() and len(df) == 32 + 12
    summary = calibration.error_table(df)
    assert len(summary) == 6 and set(summary["path"]) == {"single-stream", "load generator"}
    for row in summary.to_dict("records"):
        for key in ("ttft_err_p50_ms", "itl_err_p50_ms"):
            assert math.isfinite(row[key]) and -5.0 < row[key] < 100.0, (key, row)
        gaps = row["requests"] * 7                # 8 tokens: 7 gaps a request
        assert math.isfinite(row["itl_err_p99_ms"]) == (gaps >= 100), row          # ITL p99 from 100 gaps only
        assert math.isnan(row["ttft_err_p99_ms"])          # a p99 of 6-8 requests is not printed (needs 100)
    single = summary[summary["path"] == "single-stream"]
    assert (single["ttft_err_p50_ms"] < 15.0).all()      # no HTTP client built inside the timed span (35-67 ms)
    assert single["server_late_p50_ms"].map(math.isfinite).all()     # the reference's own lateness, both paths
    metrics = calibration.metrics_json(summary)
    assert set(metrics) == {"single-stream", "load_generator"}
    assert set(metrics["load_generator"]["openai"]) == {"c1", "c4"}
