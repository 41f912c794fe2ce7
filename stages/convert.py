"""DVC stage `convert-<format>@<quant>`: one artifact in models/<format>/<quant>/ plus its artifact.json.

A converter that cannot run here (tool not installed) leaves an artifact.json with status `error` and
the reason, so the pipeline goes on and the measure stage reports the runtime as unavailable.
"""
import shutil
import sys
from pathlib import Path

from localbench.artifacts import imatrix
from localbench.artifacts.catalog import write_artifact
from localbench.artifacts.converters import converter
from localbench.artifacts.converters.gguf import IMATRIX
from localbench.artifacts.converters.mlx import LEARNED
from localbench.config.params import params, setup_logging

SOURCE = Path("models/source")
FILE_NAMES = {"gguf": "model.gguf"}   # formats whose artifact is a single file


def make(fmt: str, quant: str, target: Path, cfg: dict) -> dict:
    settings = dict(cfg["convert"].get(fmt) or {})
    if fmt == "gguf" and quant != "F16":
        settings["base_f16"] = str(Path("models/gguf/F16") / FILE_NAMES["gguf"])
    if fmt == "gguf" and quant.endswith(IMATRIX):
        settings["imatrix"], manifest = imatrix.imatrix_file(Path("models/imatrix"))
        settings["calibration"] = imatrix.describe(manifest)
    if fmt == "mlx" and LEARNED.match(quant):
        settings["calibration_text"] = cfg["convert"]["calibration_text"]
    return converter(fmt)(SOURCE, target, cfg["model"]["name"], quant, settings)


def main(fmt: str, quant: str) -> None:
    setup_logging()
    cfg = params("model", "convert")
    out_dir = Path("models") / fmt / quant
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    target = out_dir / FILE_NAMES.get(fmt, "model")
    write_artifact(out_dir, target, cfg["model"]["name"], fmt, quant, lambda: make(fmt, quant, target, cfg))


if __name__ == "__main__":
    main(*sys.argv[1:3])
