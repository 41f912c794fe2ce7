"""DVC stage `imatrix`: the model's importance matrix (models/imatrix/) for the `<type>-imat` GGUF recipes.

Skipped (a manifest saying so) when convert.gguf.imatrix_quants is empty; an error (no F16 GGUF, llama-imatrix
failing) is kept in the manifest and every `-imat` recipe reports it.
"""
import logging
import shutil
from pathlib import Path

from localbench.artifacts import imatrix
from localbench.config.params import params, setup_logging

OUT = Path("models/imatrix")
F16 = Path("models/gguf/F16/model.gguf")

if __name__ == "__main__":
    setup_logging()
    convert = params("convert")["convert"]
    gguf = convert["gguf"]
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    if not gguf.get("imatrix_quants"):
        manifest = {"status": "skipped", "error": "convert.gguf.imatrix_quants is empty"}
    else:
        try:
            manifest = imatrix.compute_matrix(F16, Path("models/source"), OUT, convert["calibration_text"],
                                              gguf["imatrix"], gguf.get("threads"))
        except Exception as exc:  # noqa: BLE001 - recorded, the -imat recipes report it
            logging.getLogger("imatrix").error("%s", exc)
            manifest = {"status": "error", "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
    imatrix.write_manifest(manifest, OUT)
