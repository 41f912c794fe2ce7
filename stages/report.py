"""DVC stage `report`: report/report.md and report/report.html."""
import json
import shutil
from pathlib import Path

import pandas as pd

from localbench import environment
from localbench.config import params
from localbench.report import render

if __name__ == "__main__":
    cfg = params("report")["report"]
    shutil.rmtree("report", ignore_errors=True)
    extras = [json.loads(p.read_text()) for p in sorted(Path("data/raw").glob("*/extra.json"))]
    provenance_file = Path("models/source/provenance.json")
    provenance = json.loads(provenance_file.read_text()) if provenance_file.exists() else {}
    figures = sorted(Path("plots/figures").glob("*.*"))
    render(pd.read_parquet("data/requests.parquet"), pd.read_parquet("data/artifacts.parquet"), extras,
           environment.manifest(), figures, provenance, cfg, Path("report"),
           calib=pd.read_parquet("data/calibration.parquet"),
           bandwidth=json.loads(Path("data/roofline.json").read_text())["memory_bandwidth_gbps"])
