"""DVC stage `calibrate`: the harness measures the reference server and reports its own timing error.

Outs: data/calibration.parquet (one row per request) and metrics/calibration.json (p50/p99 errors, ms);
data/roofline.json: this machine's measured memory bandwidth per device (GB/s), the decode ceiling.
"""
import json
import tempfile
from pathlib import Path

from localbench.config import params, setup_logging
from localbench import calibration, roofline, servers


def headline(errors: dict) -> dict:
    """For `dvc exp show`: p50 TTFT/ITL errors at the lowest and highest concurrency only (the rest, p99
    included, stays in data/calibration.parquet and the report)."""
    out: dict = {}
    for path, protocols in errors.items():
        for protocol, levels in protocols.items():
            ends = sorted(levels, key=lambda c: int(c[1:]))
            out.setdefault(path, {})[protocol] = {
                c: {k: v for k, v in levels[c].items() if k.endswith("p50_ms")} for c in dict.fromkeys([ends[0], ends[-1]])}
    return out


def main() -> None:
    setup_logging()
    servers.stop_on_signals()     # DVC's SIGTERM stops the servers as Ctrl-C does
    cfg = params("calibration")["calibration"]
    with tempfile.TemporaryDirectory() as logs:   # the server's log tail is in any error raised
        df = calibration.measure(cfg, Path(logs))
    Path("data").mkdir(exist_ok=True)
    df.to_parquet("data/calibration.parquet", index=False)
    summary = calibration.table(df)
    bandwidth = roofline.measure(int(cfg["bandwidth_mib"]), int(cfg["bandwidth_repeats"]))
    Path("data/roofline.json").write_text(json.dumps({"memory_bandwidth_gbps": bandwidth}, indent=2))
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/calibration.json").write_text(json.dumps(
        {**headline(calibration.metrics_json(summary)), "memory_bandwidth_gbps": bandwidth}, indent=2))
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
