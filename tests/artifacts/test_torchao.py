"""PyTorch weight-only quants through torchao on the tiny real model: the int8 artifact is smaller, loads back
quantized in the torch runtime and answers a request; int4 is `unsupported` with torchao's own reason where its
kernel package is missing (this CPU), never silently a float copy."""
import json

import pytest

from localbench.analysis.cells import precision
from localbench.artifacts.catalog import write_artifact
from localbench.artifacts.converters.hf import convert
from localbench.core.types import Artifact, Request
from localbench.runtimes.torch_runtime import TorchRuntime

pytest.importorskip("torchao")


def test_int8_artifact_is_smaller_and_runs_quantized(tiny_hf_dir, tmp_path):
    fp32 = convert(tiny_hf_dir, tmp_path / "fp32", "m", "fp32", {})
    int8 = convert(tiny_hf_dir, tmp_path / "int8", "m", "int8", {"base": "fp32"})
    assert int8["status"] == "ok" and "Int8WeightOnlyConfig" in int8["tool"]
    assert int8["size_bytes"] < 0.75 * fp32["size_bytes"] and int8["bits_per_weight"] < 24
    assert json.loads((tmp_path / "int8" / "config.json").read_text())["quantization_config"]["quant_method"] == "torchao"
    assert precision("int8") == "8-bit" and precision("int4") == "4-bit"
    runtime = TorchRuntime({"device": "cpu"})
    session = runtime.load(Artifact("m", "hf", "int8", str(tmp_path / "int8"), tokenizer_path=str(tmp_path / "int8")),
                           "inprocess")
    linear = session.model.model.layers[0].mlp.up_proj.weight
    assert "Int8" in type(linear).__name__                        # measured quantized, not dequantized on load
    usage = list(session.stream(Request("p", tuple(range(10, 26)), "", 4)))[-1]
    assert usage.output_tokens == 4


def test_int4_without_its_kernel_is_unsupported_with_the_reason(tiny_hf_dir, tmp_path):
    row = write_artifact(tmp_path, tmp_path / "model", "m", "hf", "int4",
                         lambda: convert(tiny_hf_dir, tmp_path / "model", "m", "int4", {}))
    if row["status"] == "ok":
        pytest.skip("torchao's int4 kernel is installed here: int4 converts")
    assert row["status"] == "unsupported" and "torchao" in row["error"] and "Int4WeightOnlyConfig" in row["error"]
