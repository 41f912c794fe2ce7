"""The OpenAI (SSE) and Ollama (NDJSON) clients against the reference server: exact counts, errors."""
import sys

import pytest

from localbench.core.types import Chunk, Request, Sent, Usage
from localbench.transport.clients import OpenAIStream, ServerError, session_client, stream, stream_ollama, stream_openai
from localbench.transport.servers import Server

REQ = Request("p0", tuple(range(10)), "one two three four", max_tokens=7)


def collect(items):
    """(chunks, usage) of a stream that starts with its Sent stamp and ends with the Usage."""
    items = list(items)
    assert isinstance(items[0], Sent) and isinstance(items[-1], Usage)
    assert all(isinstance(i, Chunk) for i in items[1:-1])
    return items[1:-1], items[-1]


@pytest.mark.parametrize("chat", [False, True])
def test_openai_exact_counts(reference, chat):
    chunks, usage = collect(stream_openai(reference.base_url, "reference", REQ, chat=chat))
    assert len(chunks) == usage.output_tokens == 7
    assert "".join(c.text for c in chunks) == "".join(f" t{i}" for i in range(7))
    assert usage.prompt_tokens == (4 if chat else 10)     # chat sends the text, completion the ids
    assert usage.extra["usage"]["completion_tokens"] == 7


@pytest.mark.parametrize("chat", [False, True])
def test_ollama_exact_counts_and_durations(reference, chat):
    chunks, usage = collect(stream_ollama(reference.base_url, "reference", REQ, chat=chat))
    assert len(chunks) == usage.output_tokens == 7 and usage.prompt_tokens == 4
    report = usage.extra["ollama"]
    assert {"load_duration", "prompt_eval_duration", "eval_duration", "eval_count"} <= set(report)
    assert "context" not in report


def test_several_tokens_per_chunk(tmp_path):
    argv = [sys.executable, "-m", "localbench.transport.reference_server", "--port", "{port}", "--ttft-ms", "1",
            "--itl-ms", "1", "--tokens-per-chunk", "3"]
    with Server(argv, tmp_path / "ref.log") as srv:
        chunks, usage = collect(stream_openai(srv.base_url, "reference", REQ, tokens_of=lambda t: len(t.split())))
    assert [c.tokens for c in chunks] == [3, 3, 1] and usage.output_tokens == 7


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
@pytest.mark.parametrize("fault, error, match", [("http500", ServerError, "HTTP 500"),
                                                  ("drop", ServerError, "connection"),
                                                  ("stall", TimeoutError, "within")])
def test_errors(reference, protocol, fault, error, match):
    with pytest.raises(error, match=match):
        list(stream(protocol, reference.base_url, "reference", REQ, timeout_s=0.5,
                    extra_body={"reference_fault": fault}))


def test_unreachable_server():
    with pytest.raises(ServerError, match="connection"):
        list(stream_openai("http://127.0.0.1:9", "m", REQ, timeout_s=2))


def test_sent_stamp_excludes_building_the_client(reference):
    """TTFT from the Sent stamp matches the server's programmed 2 ms whether or not a client is passed."""
    import time
    with session_client() as client:
        for kwargs in ({}, {"client": client}):
            items = stream_openai(reference.base_url, "reference", REQ, **kwargs)
            before = time.perf_counter_ns()
            sent = next(items)
            first = next(items)
            arrival = time.perf_counter_ns()
            list(items)
            assert before <= sent.ns < arrival and isinstance(first, Chunk)
            assert 1.5 < (arrival - sent.ns) / 1e6 < 30


def test_llama_server_token_counts_come_from_its_timings():
    """llama-server's per-event timings.predicted_n: a chunk carries the tokens generated since the last."""
    parser = OpenAIStream("/v1/completions", chat=False, tokens_of=None)
    events = ['{"choices":[{"text":"a"}],"timings":{"predicted_n":1}}',
              '{"choices":[{"text":"bc"}],"timings":{"predicted_n":3}}',
              '{"choices":[{"text":""}],"timings":{"predicted_n":3}}']
    assert [c.tokens for c in (parser.feed("data: " + e) for e in events) if c] == [1, 2]


def test_llama_server_tokens_with_empty_text_at_the_end_ride_the_usage_event():
    """A last token whose text is empty (held-back bytes) is counted where it arrived: the final event."""
    parser = OpenAIStream("/v1/chat/completions", chat=True, tokens_of=None)
    events = ['{"choices":[{"delta":{"content":"a"}}],"timings":{"predicted_n":1}}',
              '{"choices":[{"delta":{}}],"timings":{"predicted_n":2}}',
              '{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2},"timings":{"predicted_n":2}}']
    chunks = [c for c in (parser.feed("data: " + e) for e in events) if c]
    assert [c.tokens for c in chunks] == [1, 1] and parser.usage().output_tokens == 2


def test_llama_server_own_timings_are_kept_with_the_usage():
    """The server's last `timings` (its own prompt-eval time) ride the usage report, to split a server TTFT
    into llama.cpp's prompt eval and the rest."""
    parser = OpenAIStream("/v1/completions", chat=False, tokens_of=None)
    for e in ['{"choices":[{"text":"a"}],"timings":{"predicted_n":1,"prompt_ms":80.5}}',
              '{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1},"timings":{"predicted_n":1,"prompt_ms":80.5}}']:
        parser.feed("data: " + e)
    assert parser.usage().extra["timings"]["prompt_ms"] == 80.5
    plain = OpenAIStream("/v1/completions", chat=False, tokens_of=None)
    plain.feed('data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":0}}')
    assert "timings" not in plain.usage().extra


def test_chunks_are_stamped_when_their_bytes_came_off_the_socket(reference):
    """The session client stamps its socket reads: each chunk's `ns` lies after the Sent stamp and before the
    stream handed it over, and the server's 1 ms gaps show between successive chunks."""
    import time
    with session_client() as client:
        items = stream_openai(reference.base_url, "reference", REQ, client=client)
        sent = next(items)
        stamps = []
        for item in items:
            if isinstance(item, Chunk):
                stamps.append((item.ns, time.perf_counter_ns()))
    assert len(stamps) == 7 and all(sent.ns < ns <= handed for ns, handed in stamps)
    arrivals = [ns for ns, _ in stamps]
    # events that reached one read share its stamp; the server spaced the 7 of them over 6 ms
    assert arrivals == sorted(arrivals) and (arrivals[-1] - arrivals[0]) / 1e6 > 2
