"""DVC stages `quality` (evaluate every artifact: data/quality.parquet, metrics/quality.json) and
`quality-frontier` (beside size and decode speed: data/quality_frontier.parquet, plots/quality/)."""
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

from localbench.config.params import params, setup_logging
from localbench.quality import evaluate as quality


def evaluate() -> None:
    cfg = params("quality")["quality"]
    provenance = Path("models/source/provenance.json")
    source = json.loads(provenance.read_text()).get("source", "") if provenance.exists() else ""
    artifacts = pd.read_parquet("data/artifacts.parquet").to_dict("records")
    Path(".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quality-", dir=".cache") as work:   # the base file: ~150 MB a window
        rows = quality.evaluate(artifacts, cfg, Path("models/source"), Path(work), source)
    frame = quality.to_frame(rows)
    Path("data").mkdir(exist_ok=True)
    Path("metrics").mkdir(exist_ok=True)
    frame.to_parquet("data/quality.parquet", index=False)
    summary = quality.metrics(frame) | ({"skipped": quality.SYNTHETIC_REASON} if source == "synthetic" else {})
    Path("metrics/quality.json").write_text(json.dumps(summary, indent=1))


def frontier() -> None:
    cfg = params("quality")["quality"]
    requests = Path("data/requests.parquet")
    frame = quality.frontier(pd.read_parquet("data/quality.parquet"), pd.read_parquet("data/artifacts.parquet"),
                             pd.read_parquet(requests) if requests.exists() else None, cfg)
    frame.to_parquet("data/quality_frontier.parquet", index=False)
    out = Path("plots/quality")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        old.unlink()
    cols = ["runtime", "format", "quant", "size_mib", "bits_per_weight", "ppl", "delta_ppl", "kld_mean", "kld_p99",
            "top1", "decode_tps", "pareto"]
    ok = frame[frame["status"] == "ok"]
    ok.assign(artifact=ok["runtime"] + "/" + ok["quant"])[["artifact", *cols]].to_csv(out / "frontier.csv",
                                                                                      index=False)
    quality.figure(frame, out / "frontier.png", dpi=int((cfg.get("figure") or {}).get("dpi", 120)))


if __name__ == "__main__":
    setup_logging()
    {"evaluate": evaluate, "frontier": frontier}[sys.argv[1] if len(sys.argv) > 1 else "evaluate"]()
