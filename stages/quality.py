"""DVC stages `quality` (evaluate every artifact: data/quality.parquet, metrics/quality.json) and
`quality-frontier` (beside size and decode speed: data/quality_frontier.parquet, plots/quality/)."""
import json
import sys
from pathlib import Path

from localbench.config.params import params, setup_logging
from localbench.quality import evaluate as evaluation
from localbench.quality import frontier as quality_frontier
from localbench.report import quality_figure


def evaluate() -> None:
    cfg = params("quality")["quality"]
    frame, summary = evaluation.evaluate_artifacts(cfg, Path("data/artifacts.parquet"), Path("models/source"),
                                                   Path(".cache"))   # the scratch base file: ~150 MB a window
    Path("data").mkdir(exist_ok=True)
    Path("metrics").mkdir(exist_ok=True)
    frame.to_parquet("data/quality.parquet", index=False)
    Path("metrics/quality.json").write_text(json.dumps(summary, indent=1))


def frontier() -> None:
    cfg = params("quality")["quality"]
    frame = quality_frontier.frontier_table(cfg, Path("data/quality.parquet"), Path("data/artifacts.parquet"),
                                            Path("data/requests.parquet"))
    frame.to_parquet("data/quality_frontier.parquet", index=False)
    quality_figure.write(frame, Path("plots/quality"), cfg)


if __name__ == "__main__":
    setup_logging()
    {"evaluate": evaluate, "frontier": frontier}[sys.argv[1] if len(sys.argv) > 1 else "evaluate"]()
