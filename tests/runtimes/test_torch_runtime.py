"""The PyTorch runtime on the real tiny model: streamed, exact forced length, through the harness."""
import pytest

from localbench.core.types import Artifact, Chunk, Request, RuntimeUnavailable, Usage
from localbench.measure.executor import run_request
from localbench.runtimes.torch_runtime import TorchRuntime


@pytest.fixture(scope="module")
def session(tiny_hf_dir):
    runtime = TorchRuntime({"device": "cpu"})
    assert runtime.probe().available
    s = runtime.load(Artifact("smollm2", "hf", "fp32", str(tiny_hf_dir)), "inprocess")
    yield s
    s.close()


def test_stream_yields_tokens_then_usage(session, tiny_tokenizer):
    ids = tuple(tiny_tokenizer.encode("def add(a, b):"))
    items = list(session.stream(Request("p", ids, "", max_tokens=6)))
    assert all(isinstance(i, Chunk) for i in items[:-1]) and isinstance(items[-1], Usage)
    assert sum(i.tokens for i in items[:-1]) == 6
    assert items[-1].output_tokens == 6 and items[-1].prompt_tokens == len(ids)


def test_forced_length_through_harness(session, tiny_tokenizer):
    ids = tuple(tiny_tokenizer.encode("Hello"))
    fields = run_request(session, Request("p", ids, "Hello", max_tokens=12), timeout_s=120)
    assert fields["status"] == "ok" and fields["output_tokens"] == 12
    assert fields["ttft_s"] > 0 and fields["decode_tps"] > 0 and len(fields["itl_s"]) == 11


def test_unknown_dtype_is_one_clear_error(tiny_hf_dir):
    with pytest.raises(RuntimeUnavailable, match="not one of"):
        TorchRuntime({}).load(Artifact("m", "hf", "int3", str(tiny_hf_dir)), "inprocess")


def test_missing_device_is_reported():
    probe = TorchRuntime({"device": "mps"}).probe()
    assert not probe.available and "engine.torch.device=auto" in probe.reason


def test_yarn_rope_scaling_reaches_the_model(tiny_hf_dir, tiny_tokenizer):
    """engine.torch.rope_scaling (the gpu and paper profiles' YaRN x4) is applied to the loaded model's config, its
    context extended to factor x the original, and the rows say so; generation still runs."""
    rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    s = TorchRuntime({"device": "cpu", "rope_scaling": rope}).load(
        Artifact("smollm2", "hf", "fp32", str(tiny_hf_dir)), "inprocess")
    try:
        config = s.model.config
        applied = getattr(config, "rope_parameters", None) or config.rope_scaling
        assert applied["rope_type"] == "yarn" and applied["factor"] == 4.0
        assert config.max_position_embeddings == 4 * 8192
        usage = list(s.stream(Request("p", tuple(tiny_tokenizer.encode("def f(x):")), "", max_tokens=4)))[-1]
        assert usage.output_tokens == 4 and usage.extra["rope_scaling"] == rope
    finally:
        s.close()
