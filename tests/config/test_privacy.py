"""Nothing leaves the machine: stages complete in a network namespace with only loopback, and the pipeline's
environment switches off the libraries' telemetry and Hub lookups."""
import os
import shlex
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from fakes import WL
from stage_project import ROOT, make_project


def offline(argv, cwd) -> subprocess.CompletedProcess:
    """`argv` in a fresh network namespace where only loopback is up (no route out at all)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip not installed")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no network namespaces here (unshare -n: {probe.stderr.strip()}); needs root or user namespaces")
    script = "ip link set lo up && exec " + shlex.join(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DO_NOT_TRACK"):
        env.pop(name, None)                         # the pipeline must set these itself
    return subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_no_route_out_in_the_namespace(tmp_path):
    done = offline([sys.executable, "-c", "import socket; socket.create_connection(('1.1.1.1', 443), timeout=2)"],
                   tmp_path)
    assert done.returncode != 0 and "unreachable" in done.stderr.lower()


def test_prompts_stage_completes_without_network(tmp_path, tiny_hf_dir):
    """The prompts stage loads the model's tokenizer with transformers: no Hub lookup may be needed."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["workload"].update(types=["unique", "chat"], lengths=[32], per_length=1, chat_turns=2, max_tokens=8, slices=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "models").mkdir()
    (tmp_path / "models/source").symlink_to(tiny_hf_dir)
    done = offline([sys.executable, str(ROOT / "stages/prompts.py")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    prompts = pd.read_parquet(tmp_path / "data/prompts.parquet")
    assert set(prompts.workload) == {"unique", "chat", "warmup"}


def test_measure_stage_completes_without_network(tmp_path):
    """A measure stage with a server (the reference server on 127.0.0.1) needs loopback only."""
    project = make_project(tmp_path, n_prompts=1, trials=1)
    done = offline([sys.executable, str(ROOT / "stages/measure.py"), "reference"], project)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_parquet(project / "data/raw/reference/requests.parquet")
    assert list(rows.status) == ["ok", "ok"]


def test_pipeline_environment_is_private():
    code = ("import os, localbench; print(' '.join(os.environ[k] for k in "
            "('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_HUB_DISABLE_TELEMETRY', 'DO_NOT_TRACK')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "DO_NOT"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["1", "1", "1", "1"]
    assert "analytics = false" in (ROOT / ".dvc/config").read_text()


def test_prompt_text_never_reaches_the_logs(tmp_path, caplog):
    """The harness's log lines and the launched server's log hold counts and ids, never the prompt."""
    import logging

    from localbench.core.types import Artifact, Request
    from localbench.measure.plan import Cell
    from localbench.measure.session import Measurement, load_runtime
    from localbench.measure.store import ResultStore

    caplog.set_level(logging.DEBUG)
    secret = "zebra-marmalade-7731"
    runtime = load_runtime("reference", {"transports": ["server"], "ttft_ms": 1, "itl_ms": 1, "tokens": 4,
                                         "log_dir": str(tmp_path / "logs")})
    request = Request("p0", tuple(range(6)), f"{secret} " * 3, 4)
    store = ResultStore(tmp_path / "p.jsonl", "k")
    Measurement(runtime, store, "host", {**WL, "drift_probe_mib": 4}).run(
        [Artifact("reference", "server", "n/a", "")], [Cell("unique", "p0", request, 0)])
    assert [r["status"] for r in store.rows] == ["ok", "ok"] and caplog.records
    logs = "\n".join(r.getMessage() for r in caplog.records)
    logs += "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert secret not in logs


def test_every_gguf_recipe_runs_without_network(tmp_path, tiny_hf_dir):
    """The real tools on the tiny model, offline: convert_hf_to_gguf (F16), llama-imatrix over the pinned
    calibration text, llama-quantize with the importance matrix, and Ollama's quantizer (`ollama create --quantize`
    on its own `ollama serve`, compared with llama-quantize's file of the same type)."""
    import json

    from localbench.builds import llamacpp as llamacpp_build
    from localbench.builds import ollama as ollama_build

    if llamacpp_build.missing():
        pytest.skip(f"llama.cpp not built: {llamacpp_build.missing()}")
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["convert"]["gguf"].update(imatrix_quants=["Q3_K_M"], ollama_quants=["Q4_K_M"])
    cfg["convert"]["gguf"]["imatrix"].update(n_ctx=128, chunks=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "models").mkdir()
    (tmp_path / "models/source").symlink_to(tiny_hf_dir)
    stages = ROOT / "stages"
    steps = [f"{sys.executable} {stages}/convert.py gguf F16", f"{sys.executable} {stages}/imatrix.py",
             f"{sys.executable} {stages}/convert.py gguf Q3_K_M-imat", f"{sys.executable} {stages}/convert_ollama.py Q4_K_M"]
    done = offline(["sh", "-c", " && ".join(steps)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "models/imatrix/imatrix.json").read_text())
    assert manifest["status"] == "ok" and manifest["chunks_used"] == 2 and manifest["text_pinned"]
    imat = json.loads((tmp_path / "models/gguf/Q3_K_M-imat/artifact.json").read_text())
    assert imat["status"] == "ok", imat["error"]
    assert "llama-quantize --imatrix Q3_K_M" in imat["tool"] and manifest["text_sha256"][:12] in imat["tool"]
    assert 3.4 < imat["bits_per_weight"] < 6.5        # Q3_K_M, plus the wider tensors (the tiny model: its embeddings)
    made = json.loads((tmp_path / "models/gguf/Q4_K_M-ollama/artifact.json").read_text())
    if ollama_build.executable() is None:
        assert made["status"] == "error" and "no `ollama` binary" in made["error"]
    else:
        assert made["status"] == "ok", made["error"]
        assert made["compared"].startswith("vs llama-quantize Q4_K_M of the same F16: ")
        assert "ollama create --quantize Q4_K_M" in made["tool"] and made["convert_s"] > 0


def test_mlx_learned_quant_runs_without_network(tmp_path, tiny_hf_dir):
    """mlx_lm.quant.dynamic_quant on the tiny model, offline: its calibration data is the pinned text (mlx_lm's own
    loader would download a text); the most sensitive layers get the high bits, the file lands near the target."""
    import json

    pytest.importorskip("mlx_lm.quant.dynamic_quant", reason="mlx-lm is not installed")
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["convert"]["mlx"].update(learned_quants=["dynamic_4_6"], dtype=None,
                                 learned={"target_bpw": 5.0, "samples": 2, "sequence_length": 128, "batch_size": 2})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "models").mkdir()
    (tmp_path / "models/source").symlink_to(tiny_hf_dir)
    done = offline([sys.executable, str(ROOT / "stages/convert.py"), "mlx", "dynamic_4_6"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    art = json.loads((tmp_path / "models/mlx/dynamic_4_6/artifact.json").read_text())
    assert art["status"] == "ok", art["error"]
    assert "dynamic_quant: 4/6-bit" in art["tool"] and "2 x 128 tokens of the calibration text" in art["tool"]
    assert 4.5 < art["bits_per_weight"] < 5.6 and art["convert_s"] > 0
    quant = json.loads((tmp_path / "models/mlx/dynamic_4_6/model/config.json").read_text())["quantization"]
    widened = [k for k, v in quant.items() if isinstance(v, dict) and v.get("bits") == 6]
    assert quant["bits"] == 4 and widened, quant          # some layers, not all, at 6 bits


@pytest.fixture(scope="module")
def small_llama_dir(tmp_path_factory, tiny_hf_dir):
    """A 2-layer llama with seeded random float32 weights and SmolLM2's tokenizer: small enough that GPTQ's
    column-by-column rounding and AWQ's block searches take seconds on MLX's CPU backend."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("small-llama")
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.parametrize("quant, recipe, embed_bits", [("awq_4", "awq: 4-bit, group 64, grid 4", 4),
                                                       ("gptq_4", "gptq: 4-bit, group 64; embeddings 6-bit", 6),
                                                       ("dwq_4", "dwq: 4-bit, group 64; scales and biases distilled "
                                                                 "over 2 rows", 4)])
def test_mlx_awq_gptq_dwq_run_without_network(tmp_path, small_llama_dir, quant, recipe, embed_bits):
    """mlx_lm's AWQ, GPTQ and DWQ on the pinned calibration text, offline (their own mains would download one):
    the layers at the recipe's bits, the embeddings at its fallback bits; DWQ's scales moved off plain 4-bit's."""
    import json

    pytest.importorskip("mlx_lm.quant.awq", reason="mlx-lm is not installed")
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["convert"]["mlx"].update(quants=["4bit"], learned_quants=[quant], dtype=None,
                                 learned={"samples": 3, "sequence_length": 64, "batch_size": 1, "n_grid": 4,
                                          "learning_rate": 1e-3})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "models").mkdir()
    (tmp_path / "models/source").symlink_to(small_llama_dir)
    for q in ("4bit", quant):
        done = offline([sys.executable, str(ROOT / "stages/convert.py"), "mlx", q], tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    art = json.loads((tmp_path / f"models/mlx/{quant}/artifact.json").read_text())
    assert art["status"] == "ok", art["error"]
    assert recipe in art["tool"] and "3 x 64 tokens of the calibration text" in art["tool"], art["tool"]
    assert "saved with float32 scales" in art["tool"] and art["convert_s"] > 0
    model = tmp_path / f"models/mlx/{quant}/model"
    quant_cfg = json.loads((model / "config.json").read_text())["quantization"]
    layer = quant_cfg.get("model.layers.0.mlp.down_proj", {"bits": quant_cfg["bits"]})
    embed = quant_cfg.get("model.embed_tokens", {"bits": quant_cfg["bits"]})
    assert layer["bits"] == 4 and embed["bits"] == embed_bits, quant_cfg
    if quant == "dwq_4":
        import mlx.core as mx

        key = "model.layers.0.mlp.down_proj.scales"
        learned, plain = mx.load(str(model / "model.safetensors"))[key], \
            mx.load(str(tmp_path / "models/mlx/4bit/model/model.safetensors"))[key]
        assert learned.shape == plain.shape and mx.abs(learned - plain).max().item() > 0
