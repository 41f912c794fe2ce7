"""Streaming clients measured from the client side: OpenAI-compatible SSE and Ollama's native NDJSON.

Each client yields, first, a `Sent` stamp (the moment the request body was written to the socket: where
TTFT starts for every server transport), then Chunk objects as the server's events arrive, then one Usage
taken from the server's own report (`stream_options.include_usage`; Ollama's final event with eval_count
and its durations); the caller timestamps what it receives. The sync functions serve runtimes' sessions
(each session owns one `session_client`, built at load, outside any timed span), the async ones the load
generator; both share the request bodies and the stream parsers below.

Tokens per chunk come from the server where it says so: llama-server's per-event `timings.predicted_n`
(requested with `timings_per_token`), else `tokens_of(text)`, else one token per event; the harness
reconciles their sum with the usage report and flags rows where they disagree.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator

import aiohttp
import httpcore
import httpx

from localbench.core.types import Chunk, Request, Sent, Usage

TokensOf = Callable[[str], int]


@dataclass(frozen=True)
class Target:
    """A running server to load: its address, model name, protocol and per-request body additions."""
    base_url: str
    model: str
    protocol: str = "openai"            # openai | ollama
    chat: bool | None = None            # None: each request's own chat flag
    extra_body: dict[str, Any] | None = None
    tokens_of: TokensOf | None = None   # tokens in an event's text when a server packs several
    timeout_s: float = 600.0            # whole-request bound
    text_prompt: bool = False           # send the prompt as text (servers that take no token-id lists)


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
        body["messages"] = list(request.messages) or [{"role": "user", "content": request.prompt_text}]
    else:
        body["prompt"] = list(request.prompt_ids) if request.prompt_ids else request.prompt_text
    body.update(extra_body or {})
    return body


def ollama_body(model: str, request: Request, chat: bool, extra_body: dict[str, Any] | None) -> dict:
    """The JSON body of a streamed /api/generate (raw prompt, no template) or /api/chat request.

    `extra_body` may carry "options" (merged over num_predict and temperature) and "keep_alive".
    """
    extra = dict(extra_body or {})
    options = {"num_predict": request.max_tokens, "temperature": 0.0, **extra.pop("options", {})}
    body: dict[str, Any] = {"model": model, "stream": True, "options": options}
    if chat:
        body["messages"] = list(request.messages) or [{"role": "user", "content": request.prompt_text}]
    else:
        body.update(prompt=request.prompt_text, raw=True)
    body.update(extra)
    return body


def parse_sse_event(data: str, chat: bool) -> tuple[str, dict | None, dict | None]:
    """One SSE `data:` payload -> (text delta, usage dict or None, llama-server's `timings` or None).

    llama-server sends `timings` on every event with `timings_per_token`: `predicted_n` is the tokens generated
    so far, `prompt_ms` its own prompt-eval time."""
    event = json.loads(data)
    if "error" in event:
        raise ServerError(f"server error in stream: {event['error']}")
    text = ""
    for choice in event.get("choices") or []:
        if chat:
            text += (choice.get("delta") or {}).get("content") or ""
        else:
            text += choice.get("text") or ""
    return text, event.get("usage"), event.get("timings")


class OpenAIStream:
    """Parses an SSE stream line by line: `feed` returns a Chunk or None, `usage()` the final report."""

    def __init__(self, path: str, chat: bool, tokens_of: TokensOf | None):
        self.path, self.chat, self.tokens_of = path, chat, tokens_of
        self.report: dict | None = None
        self.done = False
        self.counted = 0        # tokens already attributed to chunks (server-counted streams)
        self.timings: dict | None = None    # the server's own last timings (llama-server)

    def feed(self, line: str) -> Chunk | None:
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        text, usage, timings = parse_sse_event(data, self.chat)
        if usage:
            self.report = usage
        if timings:
            self.timings = timings
        predicted = (timings or {}).get("predicted_n")
        if predicted is not None and (text or usage):
            # the server's own count: this chunk carries the tokens sampled since the last one; tokens whose
            # text is empty ride the next chunk, the last of them the final (usage) event, when they arrived
            tokens, self.counted = int(predicted) - self.counted, int(predicted)
            return Chunk(tokens=tokens, text=text) if tokens else None
        if not text:
            return None
        return Chunk(tokens=self.tokens_of(text) if self.tokens_of else 1, text=text)

    def usage(self) -> Usage:
        if self.report is None:
            raise ServerError(f"{self.path} stream ended without a usage report (stream_options.include_usage)")
        u = self.report
        extra = {"usage": u, **({"timings": self.timings} if self.timings else {})}
        return Usage(prompt_tokens=int(u.get("prompt_tokens", 0)), output_tokens=int(u.get("completion_tokens", 0)),
                     extra=extra)


class OllamaStream:
    """Parses Ollama's NDJSON stream; the final event (done: true) gives eval_count and Ollama's durations."""

    def __init__(self, path: str, chat: bool, tokens_of: TokensOf | None):
        self.path, self.chat, self.tokens_of = path, chat, tokens_of
        self.report: dict | None = None
        self.done = False

    def feed(self, line: str) -> Chunk | None:
        if not line.strip():
            return None
        event = json.loads(line)
        if "error" in event:
            raise ServerError(f"server error in stream: {event['error']}")
        text = (event.get("message") or {}).get("content", "") if self.chat else event.get("response", "")
        if event.get("done"):
            self.done = True
            self.report = {k: v for k, v in event.items() if k not in ("message", "response", "context")}
        return Chunk(tokens=self.tokens_of(text) if self.tokens_of else 1, text=text) if text else None

    def usage(self) -> Usage:
        if self.report is None:
            raise ServerError(f"{self.path} stream ended without its final event (done: true)")
        r = self.report
        return Usage(prompt_tokens=int(r.get("prompt_eval_count", 0)), output_tokens=int(r.get("eval_count", 0)),
                     extra={"ollama": r})


def prepare(protocol: str, base_url: str, model: str, request: Request, chat: bool,
            extra_body: dict[str, Any] | None, tokens_of: TokensOf | None) -> tuple[str, dict, Any]:
    """(url, JSON body, parser) of one streamed request in `protocol` ("openai" or "ollama")."""
    if protocol == "openai":
        path = "/v1/chat/completions" if chat else "/v1/completions"
        return base_url + path, openai_body(model, request, chat, extra_body), OpenAIStream(path, chat, tokens_of)
    if protocol == "ollama":
        path = "/api/chat" if chat else "/api/generate"
        return base_url + path, ollama_body(model, request, chat, extra_body), OllamaStream(path, chat, tokens_of)
    raise ValueError(f"unknown protocol {protocol!r}; use 'openai' or 'ollama'")


def status_error(resp: httpx.Response) -> ServerError:
    return ServerError(f"HTTP {resp.status_code} from {resp.url.path}: {resp.text[:300]}")


@contextlib.contextmanager
def http_errors(url: str, timeout_s: float) -> Iterator[None]:
    """Turn httpx's timeouts into TimeoutError and its transport failures into ServerError."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"no answer from {url} within {timeout_s:g}s") from exc
    except httpx.TransportError as exc:
        raise ServerError(f"connection to {url} failed: {type(exc).__name__}: {exc}") from exc


class ReadStamps(httpcore.SyncBackend):
    """httpcore's TCP backend that records when a socket read last returned (perf_counter_ns), so a chunk's
    arrival is when its bytes came off the socket, before httpx, the line decoder and the JSON parser ran."""

    def __init__(self):
        self.last_ns = 0

    def connect_tcp(self, *args, **kwargs) -> httpcore.NetworkStream:
        return StampedStream(super().connect_tcp(*args, **kwargs), self)


class StampedStream(httpcore.NetworkStream):
    """A connection's stream whose reads stamp their ReadStamps."""

    def __init__(self, stream: httpcore.NetworkStream, stamps: ReadStamps):
        self.stream, self.stamps = stream, stamps

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self.stream.read(max_bytes, timeout)
        self.stamps.last_ns = time.perf_counter_ns()
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, timeout)

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, *args, **kwargs) -> httpcore.NetworkStream:
        return self.stream.start_tls(*args, **kwargs)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


def session_client(timeout_s: float = 600.0) -> httpx.Client:
    """The persistent client a server session owns (built once at load: building one costs 35-67 ms), its socket
    reads stamped (`client.read_stamps`).

    Kept-alive connections expire after 2 s, before llama-server's 5 s keep-alive timeout closes them
    under us; a new connection's setup falls before the `Sent` stamp either way."""
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=1, keepalive_expiry=2.0))
    stamps = ReadStamps()
    transport._pool._network_backend = stamps     # httpx 0.28 takes no backend argument; no connection exists yet
    client = httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_s, connect=10.0))
    client.read_stamps = stamps
    return client


def stream(protocol: str, base_url: str, model: str, request: Request, *, chat: bool = False,
           timeout_s: float = 600.0, extra_body: dict[str, Any] | None = None,
           tokens_of: TokensOf | None = None, client: httpx.Client | None = None) -> Iterator[Chunk | Sent | Usage]:
    """Stream one request (sync) on `client` (a temporary one if None): yield `Sent` when the body is on
    the wire, a Chunk per content-bearing event, then the server's Usage."""
    url, body, parser = prepare(protocol, base_url, model, request, chat, extra_body, tokens_of)
    sent: dict[str, int] = {}

    def stamp(event: str, _info: dict) -> None:    # httpcore's trace hook, called on this thread
        if event.endswith("send_request_body.complete"):
            sent["ns"] = time.perf_counter_ns()

    with http_errors(url, timeout_s), contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(session_client(timeout_s))
        reads = getattr(client, "read_stamps", None)
        resp = stack.enter_context(client.stream("POST", url, json=body, extensions={"trace": stamp}))
        yield Sent(sent.get("ns", time.perf_counter_ns()))
        if resp.status_code >= 400:
            resp.read()
            raise status_error(resp)
        for line in resp.iter_lines():     # httpx reads no further before these lines are consumed
            chunk = parser.feed(line)
            if chunk:
                yield dataclasses.replace(chunk, ns=reads.last_ns) if reads else chunk
            if parser.done:
                break
    yield parser.usage()


async def astream(protocol: str, base_url: str, model: str, request: Request, *, session: aiohttp.ClientSession,
                  chat: bool = False, timeout_s: float = 600.0, extra_body: dict[str, Any] | None = None,
                  tokens_of: TokensOf | None = None, trace: dict | None = None) -> AsyncIterator[Chunk | Usage]:
    """Stream one request on a shared aiohttp session (the load generator's); same items as `stream`.

    aiohttp rather than httpx here: it costs ~4x less CPU per request, so 64 streams stay on time. With a
    session from `client_session`, trace["sent_ns"] is set when the request body is written to the socket.
    """
    url, body, parser = prepare(protocol, base_url, model, request, chat, extra_body, tokens_of)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_s)
    try:
        async with session.post(url, json=body, timeout=timeout, trace_request_ctx=trace) as resp:
            if resp.status >= 400:
                raise ServerError(f"HTTP {resp.status} from {resp.url.path}: {(await resp.text())[:300]}")
            pending = b""
            async for data in resp.content.iter_any():     # one await per network read, not per line
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    chunk = parser.feed(line.decode())
                    if chunk:
                        yield chunk
                if parser.done:
                    break
            if pending and not parser.done:
                chunk = parser.feed(pending.decode())
                if chunk:
                    yield chunk
    except TimeoutError as exc:
        raise TimeoutError(f"no answer from {url} within {timeout_s:g}s") from exc
    except aiohttp.ClientError as exc:
        raise ServerError(f"connection to {url} failed: {type(exc).__name__}: {exc}") from exc
    yield parser.usage()


async def _stamp_sent(session, ctx, params) -> None:
    if ctx.trace_request_ctx is not None:
        ctx.trace_request_ctx["sent_ns"] = time.perf_counter_ns()


def client_session(connections: int = 0) -> aiohttp.ClientSession:
    """A shared aiohttp session for the load generator (0 connections = no limit), large lines allowed,
    stamping when each request is on the wire (see `astream`). One connection per request: llama-server
    closes kept-alive connections after a few requests, and a pooled one it closed fails mid-write."""
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(_stamp_sent)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections, force_close=True),
                                 read_bufsize=2**22,
                                 trace_configs=[trace])


def stream_openai(base_url: str, model: str, request: Request, *, chat: bool = False, timeout_s: float = 600.0,
                  extra_body: dict[str, Any] | None = None, tokens_of: TokensOf | None = None,
                  client: httpx.Client | None = None) -> Iterator[Chunk | Sent | Usage]:
    """Stream one request; yield a Chunk per content-bearing SSE event, then the server's Usage.

    `tokens_of(event_text) -> int` counts the tokens a chunk carries when the server packs several into
    one event (default: one token per event, which is what llama-server and mlx_lm.server send).
    """
    return stream("openai", base_url, model, request, chat=chat, timeout_s=timeout_s, extra_body=extra_body,
                  tokens_of=tokens_of, client=client)


def stream_ollama(base_url: str, model: str, request: Request, *, chat: bool = False, timeout_s: float = 600.0,
                  extra_body: dict[str, Any] | None = None, tokens_of: TokensOf | None = None,
                  client: httpx.Client | None = None) -> Iterator[Chunk | Sent | Usage]:
    """Stream one request through Ollama's /api/generate or /api/chat; Usage.extra['ollama'] holds its
    load/prompt-eval/eval durations (ns) and counts."""
    return stream("ollama", base_url, model, request, chat=chat, timeout_s=timeout_s, extra_body=extra_body,
                  tokens_of=tokens_of, client=client)
