"""DVC stage `quality`: every artifact evaluated (perplexity, KL divergence, top-1 against one reference):
data/quality.parquet and metrics/quality.json."""
import json
from pathlib import Path

from localbench.config.params import params, setup_logging
from localbench.quality.evaluate import evaluate_artifacts

if __name__ == "__main__":
    setup_logging()
    frame, summary = evaluate_artifacts(params("quality")["quality"], Path("data/artifacts.parquet"),
                                        Path("models/source"), Path(".cache"))   # the scratch base file: ~150 MB a window
    Path("data").mkdir(exist_ok=True)
    Path("metrics").mkdir(exist_ok=True)
    frame.to_parquet("data/quality.parquet", index=False)
    Path("metrics/quality.json").write_text(json.dumps(summary, indent=1))
