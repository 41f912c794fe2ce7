"""Ollama's own quantizer as a conversion path (DVC stage `convert-gguf-ollama`, artifacts `<type>-ollama`).

`ollama create --quantize <type>` (Q8_0 | Q4_K_S | Q4_K_M: the types Ollama takes) imports the F16 GGUF into a
throw-away `ollama serve` with its own models folder and quantizes it with Ollama's Go port of llama.cpp's
type rules (server/quantization.go); the model blob it writes is the artifact. `convert_s` times the whole
create, Ollama's copy of the F16 into its blob store included (what a user waits for). The result is compared
with llama-quantize's file of the same type from the same F16 (made here, in a temporary folder, untimed):
byte for byte, and tensor by tensor (type and data), in the row's `compared` column.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from localbench.artifacts.converters.gguf import OLLAMA, gguf_row, quantize
from localbench.artifacts.sources import sha256_of
from localbench.builds import ollama as ollama_build
from localbench.transport.servers import Server

NAME = "localbench-quantize"


def ollama_quantize(f16: Path, out_path: Path, qtype: str) -> None:
    """`ollama create --quantize <qtype>` of an F16 GGUF on a throw-away server; its model blob moved to out_path."""
    exe = ollama_build.executable()
    if exe is None:
        raise RuntimeError(f"no `ollama` binary: {ollama_build.skip_reason() or 'not built'}; {ollama_build.FIX}")
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        models, modelfile = Path(tmp) / "models", Path(tmp) / "Modelfile"
        modelfile.write_text(f"FROM {f16.resolve()}\n")
        server = Server([exe, "serve"], Path(tmp) / "serve.log", ready_path="/api/version")
        server.env.update(ollama_build.server_env(server.port, models))
        with server:
            ollama_build.create(exe, server.base_url, NAME, modelfile, quantize=qtype)
        shutil.move(ollama_build.model_blob(models, NAME), out_path)


def compare_ggufs(a: Path, b: Path) -> str:
    """How two GGUF files differ: byte-identical, else tensors of the same type and of identical data."""
    if sha256_of(a) == sha256_of(b):
        return "byte-identical"
    import numpy as np
    from gguf import GGUFReader

    ta = {t.name: t for t in GGUFReader(str(a)).tensors}
    tb = {t.name: t for t in GGUFReader(str(b)).tensors}
    common = sorted(set(ta) & set(tb))
    typed = [n for n in common if ta[n].tensor_type == tb[n].tensor_type]
    same = [n for n in typed if np.array_equal(ta[n].data, tb[n].data)]
    other = sorted({f"{ta[n].tensor_type.name}/{tb[n].tensor_type.name}" for n in common if n not in typed})
    only = len(set(ta) ^ set(tb))
    return (f"files differ; of {len(common)} shared tensors {len(typed)} have the same type"
            + (f" (others: {', '.join(other)})" if other else "") + f", {len(same)} identical data"
            + (f"; {only} tensors in one file only" if only else ""))


def quantize_artifact(f16: Path, out_path: Path, model: str, quant: str, tokenizer_path: Path) -> dict:
    """The `<type>-ollama` artifact at out_path and its row, compared with llama-quantize's `<type>`."""
    qtype = quant.removesuffix(OLLAMA)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ollama_quantize(f16, out_path, qtype)
    row = gguf_row(model, quant, out_path, tokenizer_path, time.perf_counter() - t0,
                   f"ollama create --quantize {qtype} (from F16 GGUF, its import included; Ollama "
                   f"{ollama_build.VERSION})")
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        quantize(f16, Path(tmp) / "llama-quantize.gguf", qtype)
        row["compared"] = f"vs llama-quantize {qtype} of the same F16: {compare_ggufs(out_path, Path(tmp) / 'llama-quantize.gguf')}"
    return row
