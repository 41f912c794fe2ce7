"""The reference server as a runtime: a server with a programmed schedule and no model, so the harness and
the load generator run end to end anywhere (engine.reference: ttft_ms, itl_ms, tokens, protocol)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

from localbench.config.engines import ReferenceEngine
from localbench.core.types import Artifact, Chunk, Probe, Request, Usage
from localbench.runtimes.base import Runtime, Session, register
from localbench.transport.clients import Target, session_client, stream
from localbench.transport.servers import Server


class ReferenceSession(Session):
    """`python -m localbench.transport.reference_server` on 127.0.0.1, streamed through the configured protocol."""

    def __init__(self, settings: ReferenceEngine | dict):
        """`settings`: engine.reference, or a dict of some of its keys (the calibration stage's)."""
        s = ReferenceEngine.model_validate(settings)
        argv = [sys.executable, "-m", "localbench.transport.reference_server", "--port", "{port}",
                "--ttft-ms", str(s.ttft_ms), "--itl-ms", str(s.itl_ms), "--tokens", str(s.tokens)]
        log = Path(s.log_dir) / "reference_server.log"
        self.server = Server(argv, log, ready_path="/v1/models", ready_timeout_s=60).start()
        self.pid = self.server.pid
        self.cold_start_s = self.server.cold_start_s
        self.protocol = s.protocol
        self.timeout_s = s.request_timeout_s
        self.target = Target(self.server.base_url, "reference", protocol=self.protocol, timeout_s=self.timeout_s)
        self.client = session_client(self.timeout_s)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:

        yield from stream(self.protocol, self.server.base_url, "reference", request, chat=request.chat,
                          timeout_s=self.timeout_s, client=self.client)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@register
class ReferenceRuntime(Runtime):
    """Streams ' t0 t1 ...' on a programmed schedule in the OpenAI or the Ollama protocol."""

    name = "reference"
    settings: ReferenceEngine
    declared = {"streaming": "programmed schedule (known TTFT and gaps), OpenAI SSE or Ollama NDJSON",
                "api": "/v1/completions, /v1/chat/completions, /api/generate, /api/chat",
                "deployment": "shipped with this project (localbench/transport/reference_server.py)"}

    def probe(self) -> Probe:
        s = self.settings
        return Probe(True, version="localbench.transport.reference_server", device="cpu (programmed schedule, no model)",
                     capabilities={"protocol": s.protocol, "ttft_ms": s.ttft_ms, "itl_ms": s.itl_ms,
                                   "streaming": True, "usage_report": True})

    def load(self, artifact: Artifact, transport: str) -> Session:
        return ReferenceSession(self.settings)
