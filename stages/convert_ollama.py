"""DVC stage `convert-gguf-ollama@<type>`: Ollama's quantizer on the F16 GGUF, models/gguf/<type>-ollama/ plus its
artifact.json (compared with llama-quantize's file of the same type; localbench.artifacts.ollama_quantize)."""
import shutil
import sys
from pathlib import Path

from localbench.artifacts import ollama_quantize
from localbench.artifacts.catalog import write_artifact
from localbench.artifacts.converters.gguf import OLLAMA
from localbench.config.params import params, setup_logging

if __name__ == "__main__":
    setup_logging()
    model = params("model")["model"]["name"]
    quant = sys.argv[1] + OLLAMA
    out_dir = Path("models/gguf") / quant
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    target = out_dir / "model.gguf"
    write_artifact(out_dir, target, model, "gguf", quant, lambda: ollama_quantize.quantize_artifact(
        Path("models/gguf/F16/model.gguf"), target, model, quant, Path("models/source")))
