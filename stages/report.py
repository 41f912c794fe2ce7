"""DVC stage `report`: report/report.md and report/report.html."""
import json
import shutil
from pathlib import Path

import pandas as pd

from localbench.analysis import bundles as compare
from localbench.config.params import params
from localbench.core import environment
from localbench.report import quality
from localbench.report.render import render

if __name__ == "__main__":
    cfg = params("report")["report"]
    shutil.rmtree("report", ignore_errors=True)
    extras = [json.loads(p.read_text()) for p in sorted(Path("data/raw").glob("*/extra.json"))]
    provenance_file = Path("models/source/provenance.json")
    provenance = json.loads(provenance_file.read_text()) if provenance_file.exists() else {}
    figures = sorted(Path("plots/figures").glob("*.*"))
    rows, artifacts = pd.read_parquet("data/requests.parquet"), pd.read_parquet("data/artifacts.parquet")
    bandwidth = json.loads(Path("data/roofline.json").read_text())["memory_bandwidth_gbps"]
    manifest = environment.manifest()
    # several machines: this run as one bundle, plus every result bundle under results/ (README) from other hosts
    config = Path("models/source/config.json")
    here = compare.local_bundle(rows, artifacts, bandwidth, manifest, extras,
                                model_config=json.loads(config.read_text()) if config.exists() else None)
    cfg["bundles"] = [here] + [b for b in compare.load_bundles(compare.RESULTS) if b.host != here.host]
    frontier = Path("data/quality_frontier.parquet")   # quantization quality beside size and speed
    cfg["quality"] = quality.section(pd.read_parquet(frontier) if frontier.exists() else None,
                                     {**params("quality")["quality"], "source": provenance.get("source"),
                                      "figure": "../plots/quality/frontier.png"
                                      if Path("plots/quality/frontier.png").exists() else None})
    render(rows, artifacts, extras, manifest, figures, provenance, cfg, Path("report"),
           calib=pd.read_parquet("data/calibration.parquet"), bandwidth=bandwidth)
