"""GGUF artifacts: F16 via llama.cpp's convert_hf_to_gguf.py, every other type from an F16 GGUF by one of
three recipes, named by the quant's suffix:

- `<type>` (Q8_0, Q6_K, Q5_K_M, Q4_K_M, IQ4_XS, Q3_K_M, ...): llama-quantize;
- `<type>-imat`: llama-quantize with the model's importance matrix (`settings['imatrix']`, the `imatrix`
  stage's models/imatrix/imatrix.gguf, localbench.artifacts.imatrix);
- `<type>-ollama`: Ollama's own quantizer (localbench.artifacts.ollama_quantize, its own stage: it launches
  `ollama serve`).

A quantized file is made from `settings['base_f16']` (the path of one already converted) when given,
otherwise (llama-quantize recipes) an F16 written to a temporary folder first (its time then counts in convert_s).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localbench.builds import llamacpp as llamacpp_build

CONVERTER_TYPES = {"F16": "f16", "BF16": "bf16", "F32": "f32"}   # written by the converter directly
IMATRIX, OLLAMA = "-imat", "-ollama"                            # quant-name suffixes of the other recipes
UNKNOWN_TOKENIZER = ("pre-tokenizer was not recognized", "tokenizer was not recognized")


def n_params(gguf_path: Path) -> int:
    """Number of weights stored in a GGUF file (sum of its tensors' elements)."""
    from gguf import GGUFReader
    return int(sum(int(t.n_elements) for t in GGUFReader(str(gguf_path)).tensors))


def convert_f16(hf_dir: Path, out_path: Path, outtype: str = "f16") -> None:
    """Run convert_hf_to_gguf.py; an unrecognised tokenizer or architecture is one clear error."""
    script, env = llamacpp_build.gguf_converter()
    proc = subprocess.run([sys.executable, str(script), str(hf_dir), "--outfile", str(out_path),
                           "--outtype", outtype], capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        return
    log = proc.stdout + proc.stderr
    if any(s in log for s in UNKNOWN_TOKENIZER):
        raise ValueError(f"llama.cpp's convert_hf_to_gguf.py does not recognise the tokenizer of {hf_dir} "
                         f"(add its pre-tokenizer hash to get_vocab_base_pre() or pick another model)")
    if "not supported" in log:
        raise ValueError(f"llama.cpp's convert_hf_to_gguf.py does not support {hf_dir}: "
                         f"{llamacpp_build.output_tail(log, 2)}")
    raise RuntimeError(f"convert_hf_to_gguf.py failed on {hf_dir} (exit {proc.returncode}):\n"
                       f"{llamacpp_build.output_tail(log, 12)}")


def recipe(quant: str) -> tuple[str, str]:
    """(GGUF type, suffix) of a quant name: 'Q4_K_M-imat' -> ('Q4_K_M', '-imat'), 'Q8_0' -> ('Q8_0', '')."""
    for suffix in (IMATRIX, OLLAMA):
        if quant.endswith(suffix):
            return quant.removesuffix(suffix), suffix
    return quant, ""


def quantize(f16_path: Path, out_path: Path, quant: str, threads: int | None = None,
             imatrix: Path | None = None) -> None:
    """llama-quantize an F16 GGUF to `quant` (Q8_0, Q5_K_M, Q4_K_M, ...), with an importance matrix if given."""
    argv = [str(llamacpp_build.tool("llama-quantize")), *(["--imatrix", str(imatrix)] if imatrix else []),
            str(f16_path), str(out_path), quant, str(threads or os.cpu_count() or 1)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-quantize {quant} failed (exit {proc.returncode}):\n"
                           f"{llamacpp_build.output_tail(proc.stdout + proc.stderr, 12)}")


def convert(hf_dir: Path, out_path: Path, model: str, quant: str, settings: dict) -> dict:
    """Write the GGUF for `quant` at out_path and return its artifact row."""
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    qtype, suffix = recipe(quant)
    t0 = time.perf_counter()
    if quant.upper() in CONVERTER_TYPES:
        outtype = CONVERTER_TYPES[quant.upper()]
        convert_f16(hf_dir, out_path, outtype)
        tool = f"convert_hf_to_gguf.py --outtype {outtype}"
    elif suffix == OLLAMA:
        raise ValueError(f"{quant} is made by Ollama's quantizer: stage convert-gguf-ollama "
                         "(localbench.artifacts.ollama_quantize)")
    elif suffix == IMATRIX:
        quantize(Path(settings["base_f16"]), out_path, qtype, settings.get("threads"), Path(settings["imatrix"]))
        tool = f"llama-quantize --imatrix {qtype} (from F16 GGUF; {settings.get('calibration', 'imatrix')})"
    elif settings.get("base_f16"):
        quantize(Path(settings["base_f16"]), out_path, quant, settings.get("threads"))
        tool = f"llama-quantize {quant} (from F16 GGUF)"
    else:
        with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
            f16 = Path(tmp) / "f16.gguf"
            convert_f16(hf_dir, f16)
            quantize(f16, out_path, quant, settings.get("threads"))
        tool = f"convert_hf_to_gguf.py --outtype f16 + llama-quantize {quant}"
    return gguf_row(model, quant, out_path, hf_dir, time.perf_counter() - t0,
                    f"{tool} (llama-cpp-python {llamacpp_build.VERSION})")


def gguf_row(model: str, quant: str, path: Path, tokenizer_path: Path, convert_s: float, tool: str) -> dict:
    """The artifact row of a GGUF file: size, bits per weight, conversion time and the tool that made it."""
    size = path.stat().st_size
    return {"model": model, "format": "gguf", "quant": quant, "path": str(path), "tokenizer_path": str(tokenizer_path),
            "size_bytes": size, "bits_per_weight": 8 * size / n_params(path), "convert_s": convert_s, "tool": tool,
            "compared": None, "status": "ok", "error": ""}
