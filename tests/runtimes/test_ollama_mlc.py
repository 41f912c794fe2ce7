"""MLC-LLM, endpoint and reference runtimes: probe reasons; real servers only when reachable (Ollama: test_ollama.py)."""
from pathlib import Path

import pytest

from localbench.core.types import Artifact, Request, RuntimeUnavailable
from localbench.measure import loadgen
from localbench.measure.calibration import reference_server
from localbench.runtimes import registry
from localbench.transport.servers import free_port

REGISTRY = registry()

REQ = Request("p0", (1, 2, 3), "hello there", max_tokens=8)


def test_mlc_probe_and_converter():
    probe = REGISTRY["mlc"]({}).probe()
    if probe.available:
        pytest.skip(f"mlc_llm is installed ({probe.version}); the real-engine test covers it")
    assert "`mlc_llm` not importable" in probe.reason and "https://mlc.ai/wheels" in probe.reason
    from localbench.artifacts.converters.mlc import convert
    with pytest.raises(RuntimeError, match="mlc_llm` not importable") as err:
        convert(Path("/nonexistent"), Path("/nonexistent/out"), "m", "q4f16_1", {})
    assert "\n" not in str(err.value)
    with pytest.raises(RuntimeUnavailable, match="not importable"):
        REGISTRY["mlc"]({}).load(Artifact("m", "mlc", "q4f16_1", "/nonexistent"), "inprocess")


def test_endpoint_against_reference(tmp_path):
    assert "base_url is empty" in REGISTRY["endpoint"]({}).probe().reason
    down = REGISTRY["endpoint"]({"base_url": f"http://127.0.0.1:{free_port()}"}).probe()
    assert not down.available and "no OpenAI-compatible server answers" in down.reason
    with reference_server(1.0, 0.5, 8, tmp_path / "ref.log") as srv:
        assert "does not serve 'nope'" in REGISTRY["endpoint"]({"base_url": srv.base_url, "model": "nope"}).probe().reason
        runtime = REGISTRY["endpoint"]({"base_url": srv.base_url, "extra_body": {"ignore_eos": True}})
        assert runtime.probe().available
        session = runtime.load(Artifact("m", "server", "n/a", srv.base_url), "server")
        assert list(session.stream(REQ))[-1].output_tokens == 8
        res = loadgen.run_loop(loadgen.closed_loop(session.target, [REQ], 2, num_requests=4))
        assert all(r.status == "ok" for r in res.records)


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_reference_runtime(tmp_path, protocol):
    runtime = REGISTRY["reference"]({"protocol": protocol, "ttft_ms": 1.0, "itl_ms": 0.5, "log_dir": str(tmp_path)})
    assert runtime.probe().available
    session = runtime.load(Artifact("reference", "server", "n/a", ""), "server")
    try:
        assert session.pid and list(session.stream(REQ))[-1].output_tokens == 8
        res = loadgen.run_loop(loadgen.closed_loop(session.target, [REQ], 2, num_requests=4))
        assert all(r.status == "ok" and sum(r.tokens_in_chunk) == 8 for r in res.records)
    finally:
        session.close()
