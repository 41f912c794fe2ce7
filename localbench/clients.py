"""Streaming clients for OpenAI-compatible servers (SSE), measured from the client side.

`stream_openai` yields Chunk objects as the server's SSE events arrive, then one Usage taken from the
server's usage report (`stream_options.include_usage`); the harness timestamps what it receives.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import httpx

from localbench.runtimes.base import Chunk, Request, Usage


class ServerError(RuntimeError):
    """An HTTP error status, a dropped connection or a malformed stream from a server."""


def openai_body(model: str, request: Request, chat: bool, extra_body: dict[str, Any] | None) -> dict:
    """The JSON body of a streamed /v1/completions or /v1/chat/completions request, length forced."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if chat:
        body["messages"] = [{"role": "user", "content": request.prompt_text}]
    else:
        body["prompt"] = list(request.prompt_ids) if request.prompt_ids else request.prompt_text
    body.update(extra_body or {})
    return body


def parse_sse_event(data: str, chat: bool) -> tuple[str, dict | None]:
    """One SSE `data:` payload -> (text delta, usage dict or None)."""
    event = json.loads(data)
    if "error" in event:
        raise ServerError(f"server error in stream: {event['error']}")
    text = ""
    for choice in event.get("choices") or []:
        if chat:
            text += (choice.get("delta") or {}).get("content") or ""
        else:
            text += choice.get("text") or ""
    return text, event.get("usage")


def stream_openai(base_url: str, model: str, request: Request, *, chat: bool = False, timeout_s: float = 600.0,
                  extra_body: dict[str, Any] | None = None,
                  tokens_of: Any = None) -> Iterator[Chunk | Usage]:
    """Stream one request; yield a Chunk per content-bearing SSE event, then the server's Usage.

    `tokens_of(event_text) -> int` counts the tokens a chunk carries when the server packs several into
    one event (default: one token per event, which is what llama-server and mlx_lm.server send).
    """
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body = openai_body(model, request, chat, extra_body)
    usage: dict | None = None
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0)) as client:
            with client.stream("POST", base_url + path, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise ServerError(f"HTTP {resp.status_code} from {path}: {resp.text[:300]}")
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    text, event_usage = parse_sse_event(data, chat)
                    if event_usage:
                        usage = event_usage
                    if text:
                        yield Chunk(tokens=tokens_of(text) if tokens_of else 1, text=text)
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"no answer from {base_url}{path} within {timeout_s:.0f}s") from exc
    except httpx.TransportError as exc:
        raise ServerError(f"connection to {base_url}{path} failed: {exc}") from exc
    if usage is None:
        raise ServerError(f"{path} stream ended without a usage report (stream_options.include_usage)")
    yield Usage(prompt_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)), extra={"usage": usage})
