"""MLX on the tiny real model: convert, in-process and server streaming, rotating KV, prompt-cache files."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from fakes import artifact_of, collect

pytest.importorskip("mlx_lm")

from localbench.artifacts.converters import mlx as mlx_convert  # noqa: E402
from localbench.core.types import Request, RuntimeUnavailable  # noqa: E402
from localbench.measure.executor import run_request, stop_caller  # noqa: E402
from localbench.runtimes.mlx import MLX  # noqa: E402


@pytest.fixture(scope="session")
def mlx_models(tiny_hf_dir, tmp_path_factory):
    """The tiny model converted once per session: {quant: artifact row}."""
    out = tmp_path_factory.mktemp("mlx")
    return {q: mlx_convert.convert(tiny_hf_dir, out / q, "smollm2-135m", q, {"group_size": 64})
            for q in ("4bit", "mixed_3_6", "bf16")}


def request(tiny_tokenizer, n_tokens: int, max_tokens: int, text: str = "The quick brown fox jumps over") -> Request:
    ids = tuple((tiny_tokenizer.encode(text) * n_tokens)[:n_tokens])
    return Request("p", ids, tiny_tokenizer.decode(list(ids)), max_tokens)


def test_convert_4bit_and_mixed(mlx_models):
    for quant, (lo, hi) in {"4bit": (4.0, 5.0), "mixed_3_6": (3.0, 5.0), "bf16": (16.0, 16.0)}.items():
        row = mlx_models[quant]
        assert row["status"] == "ok" and row["tool"].startswith("mlx_lm.convert ")
        assert lo <= row["bits_per_weight"] <= hi and row["size_bytes"] > 0 and row["convert_s"] > 0
    assert mlx_models["mixed_3_6"]["size_bytes"] < mlx_models["4bit"]["size_bytes"] < mlx_models["bf16"]["size_bytes"]


def test_float32_scales(tiny_hf_dir, tmp_path, mlx_models):
    """convert.mlx.dtype=float32: scale and bias per 64 weights in float32, 0.5 bit per weight more than bf16."""
    row = mlx_convert.convert(tiny_hf_dir, tmp_path / "4bit", "smollm2-135m", "4bit", {"group_size": 64, "dtype": "float32"})
    assert row["tool"].endswith("(dtype float32)")
    assert row["bits_per_weight"] == pytest.approx(mlx_models["4bit"]["bits_per_weight"] + 0.5, abs=0.05)
    with pytest.raises(ValueError) as exc:
        mlx_convert.convert_kwargs("4bit", 64, "float64")
    assert "\n" not in str(exc.value) and "float32" in str(exc.value)


def test_unsupported_quant_and_transport_one_line(tmp_path, mlx_models):
    with pytest.raises(ValueError) as exc:
        mlx_convert.convert(tmp_path, tmp_path / "x", "m", "Q4_K_M", {})
    assert "\n" not in str(exc.value) and "mixed_3_6" in str(exc.value) and "4bit" in str(exc.value)
    with pytest.raises(RuntimeUnavailable) as exc:
        MLX({}).load(artifact_of(mlx_models["bf16"]), "grpc")
    assert "\n" not in str(exc.value) and "inprocess" in str(exc.value)


def test_inprocess_stream_exact_count(tiny_tokenizer, mlx_models):
    rt = MLX({})
    assert rt.probe().available and rt.probe().device
    session = rt.load(artifact_of(mlx_models["4bit"]), "inprocess")
    try:
        chunks, usage, ttft = collect(session, request(tiny_tokenizer, 6, 5))
        assert usage.output_tokens == 5 and sum(c.tokens for c in chunks) == 5 and usage.prompt_tokens == 6
        assert ttft > 0 and session.memory()["device_mem_bytes"] > 0
    finally:
        session.close()


def test_rotating_kv_cache_runs_long_prompt(tiny_tokenizer, mlx_models):
    session = MLX({"max_kv_size": 8}).load(artifact_of(mlx_models["bf16"]), "inprocess")
    try:
        _, usage, _ = collect(session, request(tiny_tokenizer, 20, 6))
        assert usage.output_tokens == 6
        assert usage.extra["prompt_exceeds_kv_window"] and usage.extra["max_kv_size"] == 8
    finally:
        session.close()


def test_server_exact_count(tiny_tokenizer, mlx_models, tmp_path):
    session = MLX({"log_dir": str(tmp_path)}).load(artifact_of(mlx_models["bf16"]), "server")
    try:
        assert session.pid and session.cold_start_s > 0
        chunks, usage, ttft = collect(session, request(tiny_tokenizer, 8, 12))
        assert usage.output_tokens == 12 and ttft > 0 and chunks
    finally:
        session.close()
    assert session.log_path.exists() and (tmp_path / "hf_hub_cache").is_dir()


def test_prompt_cache_file_lowers_ttft(tiny_tokenizer, mlx_models, tmp_path):
    settings = {"prompt_cache_dir": str(tmp_path), "prompt_cache_prefix_tokens": 160,
                "prompt_cache_suffix_tokens": 8, "prompt_cache_trials": 1, "prompt_cache_max_tokens": 2}
    rows = MLX(settings).extra_measurements([artifact_of(mlx_models["bf16"])],
                                            [request(tiny_tokenizer, 64, 2)], tmp_path)
    row = rows[0]
    assert row["kind"] == "mlx prompt cache" and "flag" not in row, row
    assert row["ttft_s_with_cache"] < row["ttft_s_without_cache"] and row["same_first_token"]
    assert row["cache_file_bytes"] > 0 and row["cache_file_mode"] == "0o600" and row["prefix_tokens"] == 160
    assert not any(tmp_path.rglob("*.safetensors"))   # deleted after the run (prompt_cache_keep false)


def test_yarn_rope_scaling_reaches_both_transports(tiny_tokenizer, mlx_models, tmp_path):
    """engine.mlx.rope_scaling (the gpu profile's YaRN x4, as torch's): the in-process model runs YaRN RoPE, also on the
    request's own thread (its rope frequencies, lazy outside the parameters, failed there on an H100 lease), the server
    loads the same rewritten config, the rows say so, and the temporary view of the model is gone after close."""
    from mlx_lm.models.rope_utils import YarnRoPE

    rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    art = artifact_of(mlx_models["bf16"])
    session = MLX({"rope_scaling": rope}).load(art, "inprocess")
    try:
        assert isinstance(session.model.layers[0].self_attn.rope, YarnRoPE)
        row = run_request(session, request(tiny_tokenizer, 8, 4), timeout_s=60)   # on its own thread, as measured
        assert row["status"] == "ok", row["error"]
        assert row["output_tokens"] == 4 and json.loads(row["extra"])["rope_scaling"] == rope
    finally:
        stop_caller(session)
        session.close()
    assert not session.view.parent.exists()
    server = MLX({"rope_scaling": rope, "log_dir": str(tmp_path)}).load(art, "server")
    try:
        assert server.view.name == Path(art.path).name        # the server's log and model id keep the model's name
        config = json.loads((server.view / "config.json").read_text())
        assert config["rope_scaling"] == rope and config["max_position_embeddings"] == 4 * 8192
        _, usage, _ = collect(server, request(tiny_tokenizer, 8, 4))
        assert usage.output_tokens == 4 and usage.extra["rope_scaling"] == rope
    finally:
        server.close()
    assert not server.view.parent.exists() and json.loads((Path(art.path) / "config.json").read_text()).get("rope_scaling") is None


def test_a_failed_load_leaves_no_rope_view(mlx_models, tmp_path, monkeypatch):
    """The temporary view of the model is removed when the session it was made for fails to start."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    with pytest.raises(Exception):
        MLX({"rope_scaling": rope, "log_dir": str(tmp_path / "logs"), "ready_timeout_s": 0.001}).load(
            artifact_of(mlx_models["bf16"]), "server")
    assert not list(tmp_path.glob("lb-mlx-rope-*"))
