"""DVC stage `download`: the configured model as a plain HF folder in models/source/."""
import json
import sys
from pathlib import Path

from localbench.artifacts.sources import SourceError, download
from localbench.config import privacy
from localbench.config.params import params, setup_logging

OUT = Path("models/source")


def main() -> None:
    setup_logging()
    model = params("model")["model"]
    if model["source"] == "hf":    # the one step that reaches the Hub by design
        privacy.allow_hub()
    try:
        provenance = download(model, OUT)
    except SourceError as exc:
        sys.exit(f"download: {exc}")
    (OUT / "provenance.json").write_text(json.dumps({"model": model["name"], **provenance}, indent=2))


if __name__ == "__main__":
    main()
