"""DVC stage `plots`: the paper's figures in plots/figures and the CSVs behind them in plots/data."""
import shutil
from pathlib import Path

import pandas as pd

from localbench.config.params import params
from localbench.report.figures import make_all

if __name__ == "__main__":
    cfg = params("plots")["plots"]
    shutil.rmtree("plots/figures", ignore_errors=True)
    make_all(pd.read_parquet("data/requests.parquet"), Path("plots/figures"), Path("plots/data"),
             fmt=cfg["format"], dpi=cfg["dpi"], style=cfg["style"])
