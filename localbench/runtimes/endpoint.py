"""An OpenAI-compatible server the user already runs (e.g. vLLM on a GPU box): base_url + model from
engine.endpoint, measured from this machine's client side. Off unless runtime.endpoint is true."""
from __future__ import annotations

from typing import Iterator

import httpx

from localbench.config.engines import EndpointEngine
from localbench.core.types import Artifact, Chunk, Probe, Request, RuntimeUnavailable, Usage
from localbench.runtimes.base import Runtime, Session, register
from localbench.transport.clients import Target, session_client, stream_openai


def served_models(base_url: str) -> list[str]:
    """Model ids from GET /v1/models; RuntimeUnavailable saying why when the server does not answer."""
    try:
        resp = httpx.get(base_url.rstrip("/") + "/v1/models", timeout=5.0)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise RuntimeUnavailable(f"no OpenAI-compatible server answers at {base_url}/v1/models "
                                 f"({type(exc).__name__}: {exc}); start it or fix engine.endpoint.base_url") from exc
    return [m.get("id", "") for m in resp.json().get("data", [])]


class EndpointSession(Session):
    """Requests to the user's server; nothing to start or stop, no memory of ours to report."""

    external = True

    def __init__(self, base_url: str, model: str, settings: EndpointEngine):
        self.base_url, self.model = base_url, model
        self.extra_body = dict(settings.extra_body or {})
        self.timeout_s = settings.request_timeout_s
        self.target = Target(base_url, model, extra_body=self.extra_body, timeout_s=self.timeout_s)
        self.client = session_client(self.timeout_s)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        yield from stream_openai(self.base_url, self.model, request, chat=request.chat, timeout_s=self.timeout_s,
                                 extra_body=self.extra_body, client=self.client)

    def close(self) -> None:
        self.client.close()


@register
class Endpoint(Runtime):
    """Any OpenAI-compatible endpoint (vLLM, SGLang, llama-server, LM Studio ...) given by URL."""

    name = "endpoint"
    settings: EndpointEngine
    declared = {"streaming": "SSE (stream_options.include_usage)",
                "api": "any OpenAI-compatible server the user runs (engine.endpoint.base_url)",
                "deployment": "external: not launched by the pipeline"}

    def _resolve(self) -> tuple[str, str]:
        base_url = self.settings.base_url.rstrip("/")
        if not base_url:
            raise RuntimeUnavailable("engine.endpoint.base_url is empty: set it to your server, "
                                     "e.g. -S engine.endpoint.base_url=http://gpu-box:8000")
        models = served_models(base_url)
        model = self.settings.model or (models[0] if models else "")
        if model not in models:
            raise RuntimeUnavailable(f"{base_url} does not serve {model!r} (it serves {models}); "
                                     "fix engine.endpoint.model")
        return base_url, model

    def probe(self) -> Probe:
        try:
            base_url, model = self._resolve()
        except RuntimeUnavailable as exc:
            return Probe(False, reason=str(exc))
        return Probe(True, version=f"OpenAI-compatible server at {base_url}", device=f"remote ({base_url})",
                     capabilities={"model": model, "streaming": True, "usage_report": True,
                                   "extra_body": self.settings.extra_body or {}})

    def load(self, artifact: Artifact, transport: str) -> Session:
        base_url, model = self._resolve()
        return EndpointSession(base_url, model, self.settings)
