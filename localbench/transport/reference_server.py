"""A reference server that streams tokens on a programmed schedule, for calibrating the harness.

Speaks the OpenAI protocol (/v1/completions, /v1/chat/completions, /v1/models; SSE with a usage report)
and Ollama's (/api/generate, /api/chat, /api/tags, /api/version; NDJSON). Token i of a request is written
at recv + ttft + i * itl (absolute deadlines, no drift), where recv is when the request was parsed. The
output length is the request's max_tokens / num_predict (default --tokens). The server stamps each write
with time.perf_counter_ns (a host-wide monotonic clock) and reports the stamps in its final usage event
under "reference" so calibration can split the error into server lateness and client delay.

Faults for tests, chosen per request by the body field "reference_fault": "http500" (answer 500),
"drop" (close the connection after 2 tokens), "stall" (send nothing).

    python -m localbench.transport.reference_server --port 8000 --ttft-ms 20 --itl-ms 5 --tokens 64
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import selectors
import sys
import time

from aiohttp import web

HOST = "127.0.0.1"


def precise_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers wake within microseconds, not the 1 ms of epoll/kqueue.

    select() takes a microsecond timeout where epoll_wait rounds up to a whole millisecond; on Linux the
    thread's timer slack (50 us by default) is also cut to 1 ns.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK = 29
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


async def sleep_until(deadline_ns: int) -> None:
    delay = deadline_ns - time.perf_counter_ns()
    if delay > 0:
        await asyncio.sleep(delay * 1e-9)


def token_text(i: int) -> str:
    return f" t{i}"


def count_prompt_tokens(body: dict) -> int:
    """Prompt length: token ids as given, else whitespace-separated words (the reference 'tokenizer')."""
    if "messages" in body:
        return sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        return len(prompt)
    return len(str(prompt).split())


class Reference:
    """The programmed schedule and the request handlers."""

    def __init__(self, ttft_ms: float, itl_ms: float, tokens: int, tokens_per_chunk: int, model: str):
        self.ttft_ns = int(ttft_ms * 1e6)
        self.itl_ns = int(itl_ms * 1e6)
        self.tokens = tokens
        self.per_chunk = max(1, tokens_per_chunk)
        self.model = model

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.models)
        app.router.add_post("/v1/completions", self.openai)
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/version", self.version)
        app.router.add_post("/api/generate", self.ollama)
        app.router.add_post("/api/chat", self.ollama)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model",
                                                               "owned_by": "localbench"}]})

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": self.model, "model": self.model, "size": 0,
                                              "details": {"format": "reference"}}]})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "reference"})

    async def stream(self, request: web.Request, body: dict, n: int, content_type: str, event, final):
        """Write n tokens on schedule as `event(text, index)` payloads, then `final(stamps)`."""
        recv_ns = time.perf_counter_ns()
        fault = body.get("reference_fault")
        if fault == "http500":
            return web.json_response({"error": "programmed failure"}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        if fault == "stall":
            await asyncio.sleep(3600)
        sent: list[int] = []
        for i in range(0, n, self.per_chunk):
            await sleep_until(recv_ns + self.ttft_ns + i * self.itl_ns)
            if fault == "drop" and i >= 2:
                request.transport.abort()
                return resp
            text = "".join(token_text(j) for j in range(i, min(i + self.per_chunk, n)))
            sent.append(time.perf_counter_ns())
            await resp.write(event(text, i))
        await resp.write(final({"recv_ns": recv_ns, "sent_ns": sent, "ttft_ns": self.ttft_ns,
                                "itl_ns": self.itl_ns, "tokens_per_chunk": self.per_chunk}))
        await resp.write_eof()
        return resp

    async def openai(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = "messages" in body
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.tokens)
        p = count_prompt_tokens(body)
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(text: str, i: int) -> bytes:
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            return b"data: " + json.dumps({"id": "ref", "object": kind, "created": created, "model": self.model,
                                           "choices": [choice | {"finish_reason": None}]}).encode() + b"\n\n"

        def final(stamps: dict) -> bytes:
            usage = {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n, "reference": stamps}
            done = {"id": "ref", "object": kind, "created": created, "model": self.model, "choices": [],
                    "usage": usage}
            return b"data: " + json.dumps(done).encode() + b"\n\ndata: [DONE]\n\n"

        return await self.stream(request, body, n, "text/event-stream", event, final)

    async def ollama(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = "messages" in body
        n = int((body.get("options") or {}).get("num_predict") or self.tokens)
        p = count_prompt_tokens(body)

        def event(text: str, i: int) -> bytes:
            out = {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
            return json.dumps({"model": self.model, "created_at": "", **out, "done": False}).encode() + b"\n"

        def final(stamps: dict) -> bytes:
            span = (stamps["sent_ns"][-1] - stamps["recv_ns"]) if stamps["sent_ns"] else 0
            out = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
            return json.dumps({"model": self.model, "created_at": "", **out, "done": True, "done_reason": "length",
                               "total_duration": span, "load_duration": 0, "prompt_eval_count": p,
                               "prompt_eval_duration": self.ttft_ns, "eval_count": n,
                               "eval_duration": max(span - self.ttft_ns, 0), "reference": stamps}).encode() + b"\n"

        return await self.stream(request, body, n, "application/x-ndjson", event, final)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttft-ms", type=float, default=20.0)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--tokens", type=int, default=64, help="output length when a request gives none")
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--model", default="reference")
    a = ap.parse_args(argv)
    ref = Reference(a.ttft_ms, a.itl_ms, a.tokens, a.tokens_per_chunk, a.model)
    loop = precise_loop()
    asyncio.set_event_loop(loop)
    gc.freeze()                       # startup objects out of the GC's way: shorter collection pauses
    gc.set_threshold(50_000, 50, 100)
    web.run_app(ref.app(), host=HOST, port=a.port, loop=loop, access_log=None, print=None,
                backlog=1024, handle_signals=True)


if __name__ == "__main__":
    main()
