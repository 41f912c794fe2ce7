"""DVC stage `quality-frontier`: quality beside size and decode speed: data/quality_frontier.parquet and the
figure with its CSV in plots/quality/."""
from pathlib import Path

from localbench.config.params import params, setup_logging
from localbench.quality.frontier import frontier_table
from localbench.report import quality_figure

if __name__ == "__main__":
    setup_logging()
    cfg = params("quality")["quality"]
    frame = frontier_table(cfg, Path("data/quality.parquet"), Path("data/artifacts.parquet"),
                           Path("data/requests.parquet"))
    frame.to_parquet("data/quality_frontier.parquet", index=False)
    quality_figure.write(frame, Path("plots/quality"), cfg)
