"""Print the harness's timing error against the reference server (ms): `python benchmarks/calibration_bench.py`.

Options override conf/calibration/default.yaml, e.g. `--concurrency 1 64 --requests 256 --protocols openai`.
Both client paths are measured: single-stream (a runtime session's client through the harness) and the load
generator. Target: TTFT error |p50| < 1 ms and p99 < 3 ms on the single-stream path.
"""
import argparse
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from localbench.measure import calibration

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/calibration/default.yaml"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=cfg["concurrency"])
    ap.add_argument("--requests", type=int, default=cfg["requests_per_level"])
    ap.add_argument("--tokens", type=int, default=cfg["tokens"])
    ap.add_argument("--ttft-ms", type=float, default=cfg["ttft_ms"])
    ap.add_argument("--itl-ms", type=float, default=cfg["itl_ms"])
    ap.add_argument("--protocols", nargs="+", default=cfg["protocols"])
    ap.add_argument("--single-stream-requests", type=int, default=cfg["single_stream_requests"])
    a = ap.parse_args()
    cfg.update(concurrency=a.concurrency, requests_per_level=a.requests, tokens=a.tokens, ttft_ms=a.ttft_ms,
               itl_ms=a.itl_ms, protocols=a.protocols, single_stream_requests=a.single_stream_requests)
    with tempfile.TemporaryDirectory() as logs:
        summary = calibration.error_table(calibration.measure(cfg, Path(logs)))
    cols = ["path", "protocol", "concurrency", "requests", "errors"] + [c for c in summary.columns if c.endswith("_ms")]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
