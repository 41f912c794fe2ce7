"""MLC-LLM: in-process through `mlc_llm.MLCEngine`, server through `mlc_llm serve` (OpenAI-compatible).

Artifacts come from localbench.artifacts.converters.mlc (weights + mlc-chat-config.json + a compiled model library).
Length is forced with MLC's debug_config {"ignore_eos": true}; usage comes from stream_options.include_usage.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

from localbench.builds.mlc import import_mlc
from localbench.config.engines import MlcEngine
from localbench.core.types import Artifact, Chunk, Probe, Request, RuntimeUnavailable, Usage
from localbench.runtimes.base import Runtime, Session, register
from localbench.transport.clients import Target, session_client, stream_openai
from localbench.transport.servers import Server

FORCE_LENGTH = {"debug_config": {"ignore_eos": True}}


def model_lib(artifact: Artifact) -> str:
    libs = sorted(Path(artifact.path).glob("lib.*"))
    if not libs:
        raise RuntimeUnavailable(f"no compiled model library (lib.so/lib.dylib) in {artifact.path}; "
                                 "rerun the convert-mlc stage")
    return str(libs[0])


class InprocessSession(Session):
    """MLCEngine in this process (MLC's synchronous engine, one request at a time)."""

    def __init__(self, artifact: Artifact, settings: MlcEngine):
        mlc_llm = import_mlc()
        self.model = artifact.path
        self.engine = mlc_llm.MLCEngine(model=artifact.path, model_lib=model_lib(artifact),
                                        device=settings.device, mode=settings.mode)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        common = dict(model=self.model, max_tokens=request.max_tokens, temperature=0.0, stream=True,
                      stream_options={"include_usage": True}, extra_body=FORCE_LENGTH)
        if request.chat:
            messages = list(request.messages) or [{"role": "user", "content": request.prompt_text}]
            responses = self.engine.chat.completions.create(messages=messages, **common)
        else:
            prompt = list(request.prompt_ids) if request.prompt_ids else request.prompt_text
            responses = self.engine.completions.create(prompt=prompt, **common)
        usage = None
        for resp in responses:
            for choice in resp.choices:
                text = (choice.delta.content if request.chat else choice.text) or ""
                if text:
                    yield Chunk(tokens=1, text=text)
            if resp.usage is not None:
                usage = resp.usage
        if usage is None:
            raise RuntimeError("MLCEngine reported no usage (stream_options.include_usage)")
        yield Usage(int(usage.prompt_tokens), int(usage.completion_tokens), {"usage": usage.model_dump()})

    def close(self) -> None:
        self.engine.terminate()


class ServerSession(Session):
    """`mlc_llm serve` on 127.0.0.1 (a free port), streamed through the OpenAI API."""

    def __init__(self, artifact: Artifact, settings: MlcEngine):
        import_mlc()
        argv = [sys.executable, "-m", "mlc_llm", "serve", artifact.path, "--model-lib", model_lib(artifact),
                "--device", settings.device, "--mode", settings.mode, "--host", "127.0.0.1", "--port", "{port}"]
        log = Path(settings.log_dir) / f"mlc_serve_{artifact.quant}.log"
        self.server = Server(argv, log, ready_path="/v1/models", ready_timeout_s=settings.ready_timeout_s).start()
        self.pid = self.server.pid
        self.model = artifact.path
        self.timeout_s = settings.request_timeout_s
        self.target = Target(self.server.base_url, self.model, extra_body=FORCE_LENGTH, timeout_s=self.timeout_s)
        self.client = session_client(self.timeout_s)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        yield from stream_openai(self.server.base_url, self.model, request, chat=request.chat,
                                 timeout_s=self.timeout_s, extra_body=FORCE_LENGTH, client=self.client)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@register
class MLC(Runtime):
    """MLC-LLM on the host's device (Metal on Apple Silicon, CUDA/Vulkan elsewhere)."""

    name = "mlc"
    settings: MlcEngine
    declared = {"quantization": "q4f16_1, q4f16_awq, q0f16 ... (mlc_llm convert_weight + gen_config)",
                "kv_cache": "paged KV cache with radix prefix caching (MLCEngine), left on: cold cells cannot hit it, "
                            "every no-reuse prompt starts with a token no other prompt starts with",
                "streaming": "MLCEngine stream in-process; SSE from mlc_llm serve",
                "api": "OpenAI-compatible mlc_llm serve and MLCEngine (chat.completions)",
                "deployment": "wheels from mlc.ai's index; a model library compiled per device (Metal, CUDA, Vulkan, WebGPU)"}

    def probe(self) -> Probe:
        try:
            mlc_llm = import_mlc()
        except RuntimeUnavailable as exc:
            return Probe(False, reason=str(exc))
        return Probe(True, version=f"mlc_llm {getattr(mlc_llm, '__version__', 'unknown')}",
                     device=self.settings.device,
                     capabilities={"force_length": "debug_config.ignore_eos"})

    def load(self, artifact: Artifact, transport: str) -> Session:
        if transport == "server":
            return ServerSession(artifact, self.settings)
        return InprocessSession(artifact, self.settings)
