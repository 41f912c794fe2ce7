"""DVC stage `calibrate`: the harness measures the reference server and reports its own timing error.

Outs: data/calibration.parquet (one row per request) and metrics/calibration.json (p50/p99 errors, ms);
data/roofline.json: this machine's measured memory bandwidth per device (GB/s), the decode ceiling.
"""
import json
import tempfile
from pathlib import Path

from localbench.config.params import params, setup_logging
from localbench.core import hardware
from localbench.measure import calibration
from localbench.transport import servers


def main() -> None:
    setup_logging()
    servers.stop_on_signals()     # DVC's SIGTERM stops the servers as Ctrl-C does
    cfg = params("calibration")["calibration"]
    with tempfile.TemporaryDirectory() as logs:   # the server's log tail is in any error raised
        df = calibration.measure(cfg, Path(logs))
    Path("data").mkdir(exist_ok=True)
    df.to_parquet("data/calibration.parquet", index=False)
    summary = calibration.error_table(df)
    bandwidth = hardware.measure_bandwidth(int(cfg["bandwidth_mib"]), int(cfg["bandwidth_repeats"]))
    Path("data/roofline.json").write_text(json.dumps({"memory_bandwidth_gbps": bandwidth}, indent=2))
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/calibration.json").write_text(json.dumps(
        {**calibration.headline_errors(calibration.metrics_json(summary)), "memory_bandwidth_gbps": bandwidth}, indent=2))
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
