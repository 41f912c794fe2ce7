"""DVC stage `convert-<format>@<quant>`: one artifact in models/<format>/<quant>/ plus its artifact.json.

A converter that cannot run here (tool not installed) leaves an artifact.json with status `error` and
the reason, so the pipeline goes on and the measure stage reports the runtime as unavailable.
"""
import json
import logging
import shutil
import sys
from pathlib import Path

from localbench.artifacts import integrity
from localbench.artifacts.converters import converter
from localbench.config.params import params, setup_logging
from localbench.core.schema import ARTIFACT_SCHEMA

SOURCE = Path("models/source")
FILE_NAMES = {"gguf": "model.gguf"}   # formats whose artifact is a single file


def main(fmt: str, quant: str) -> None:
    setup_logging()
    cfg = params("model", "convert")
    settings = dict(cfg["convert"].get(fmt) or {})
    out_dir = Path("models") / fmt / quant
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    if fmt == "gguf" and quant != "F16":
        settings["base_f16"] = str(Path("models/gguf/F16") / FILE_NAMES["gguf"])
    target = out_dir / FILE_NAMES.get(fmt, "model")
    try:
        row = converter(fmt)(SOURCE, target, cfg["model"]["name"], quant, settings)
    except Exception as exc:  # noqa: BLE001 - recorded, the pipeline goes on
        logging.getLogger("convert").error("%s %s: %s", fmt, quant, exc)
        row = {"model": cfg["model"]["name"], "format": fmt, "quant": quant, "path": str(target),
               "status": "error", "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
    row = integrity.record({name: row.get(name) for name in ARTIFACT_SCHEMA.names}, target)   # + sha256 (files)
    (out_dir / "artifact.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
