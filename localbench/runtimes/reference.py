"""The reference server as a runtime: a server with a programmed schedule and no model, so the harness and
the load generator run end to end anywhere (engine.reference: ttft_ms, itl_ms, tokens, protocol)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

from localbench.core.types import Artifact, Chunk, Probe, Request, Usage
from localbench.runtimes.base import Runtime, Session, register
from localbench.transport.clients import Target, session_client, stream
from localbench.transport.servers import Server


class ReferenceSession(Session):
    """`python -m localbench.transport.reference_server` on 127.0.0.1, streamed through the configured protocol."""

    def __init__(self, settings: dict[str, Any]):

        argv = [sys.executable, "-m", "localbench.transport.reference_server", "--port", "{port}",
                "--ttft-ms", str(settings.get("ttft_ms", 20.0)), "--itl-ms", str(settings.get("itl_ms", 5.0)),
                "--tokens", str(settings.get("tokens", 64))]
        log = Path(settings.get("log_dir") or "logs/reference") / "reference_server.log"
        self.server = Server(argv, log, ready_path="/v1/models", ready_timeout_s=60).start()
        self.pid = self.server.pid
        self.cold_start_s = self.server.cold_start_s
        self.protocol = settings.get("protocol", "openai")
        self.timeout_s = float(settings.get("request_timeout_s", 60))
        self.target = Target(self.server.base_url, "reference", protocol=self.protocol, timeout_s=self.timeout_s)
        self.client = session_client(self.timeout_s)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:

        yield from stream(self.protocol, self.server.base_url, "reference", request, chat=request.chat,
                          timeout_s=self.timeout_s, client=self.client)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@register
class Reference(Runtime):
    """Streams ' t0 t1 ...' on a programmed schedule in the OpenAI or the Ollama protocol."""

    name = "reference"
    transports = ("server",)
    declared = {"streaming": "programmed schedule (known TTFT and gaps), OpenAI SSE or Ollama NDJSON",
                "api": "/v1/completions, /v1/chat/completions, /api/generate, /api/chat",
                "deployment": "shipped with this project (localbench/transport/reference_server.py)"}

    def probe(self) -> Probe:
        s = self.settings
        return Probe(True, version="localbench.transport.reference_server", device="cpu (programmed schedule, no model)",
                     capabilities={"protocol": s.get("protocol", "openai"), "ttft_ms": s.get("ttft_ms", 20.0),
                                   "itl_ms": s.get("itl_ms", 5.0), "streaming": True, "usage_report": True})

    def load(self, artifact: Artifact, transport: str) -> Session:
        return ReferenceSession(self.settings)
