"""llama.cpp runtime: in-process through llama_cpp.Llama, or llama-server over the OpenAI-compatible API.

Both transports load GGUF artifacts with the same threads / context / batch / flash-attention / GPU-layer
settings (conf/engine/llamacpp.yaml). Length is forced: in-process a logits processor bans every
end-of-generation token and exactly max_tokens tokens are taken from Llama.generate, llama-server gets
`ignore_eos`. The KV cache is dropped between requests (in-process `Llama.reset()`, server
`cache_prompt: false`) unless the request is a cache-reuse one. Chunks carry the tokens llama.cpp sampled
since the last chunk (in-process: one per sampled token; server: `timings.predicted_n`).
llama-bench runs on the same file and shapes inside each measurement window, right after the pipeline's
own requests of that window (window_references), for the fidelity check.
Install: `python -m localbench.builds.llamacpp`.
"""
from __future__ import annotations

import codecs
import contextlib
import ctypes
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Iterator

from localbench.builds import llamacpp as llamacpp_build
from localbench.config.engines import LlamacppEngine
from localbench.core.types import Artifact, Chunk, Probe, Request, RuntimeUnavailable, Usage
from localbench.runtimes.base import Runtime, Session, register
from localbench.transport.clients import ServerError, Target, session_client, stream_openai
from localbench.transport.servers import Server, ServerDied, log_tail

ROPE_TYPES = {"none": 0, "linear": 1, "yarn": 2}     # llama_rope_scaling_type


class InProcessSession(Session):
    """A llama_cpp.Llama; each request is one Llama.generate on the exact prompt ids."""

    def __init__(self, llm, load_log: str, rope: dict | None = None):
        import llama_cpp
        import numpy as np

        self.llm, self.rope = llm, rope or {}
        self.buffers = llamacpp_build.buffer_sizes(load_log)
        self.buffers["model_bytes"] = int(llama_cpp.llama_model_size(llm.model))
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.eog = np.array([t for t in range(llama_cpp.llama_vocab_n_tokens(vocab))
                             if llama_cpp.llama_vocab_is_eog(vocab, t)], dtype=np.int64)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        import llama_cpp

        llm = self.llm
        prompt = list(request.prompt_ids) or llm.tokenize(request.prompt_text.encode(), add_bos=True, special=True)
        if len(prompt) + request.max_tokens > llm.n_ctx():
            raise RuntimeUnavailable(f"prompt {len(prompt)} + {request.max_tokens} tokens exceed n_ctx="
                                     f"{llm.n_ctx()}; raise engine.llamacpp.n_ctx")
        if not request.reuse_cache:
            # Llama keeps the last prompt's KV (and its tokens) and its generate() reuses the longest common
            # prefix with the next prompt; reset() forgets it. A reuse request keeps it, so it hits only what
            # the request before it left: the plan runs a prefix sibling / the previous chat turn right before.
            llm.reset()

        def no_eog(_input_ids, scores):
            scores[self.eog] = -float("inf")
            return scores

        llama_cpp.llama_perf_context_reset(llm.ctx)
        # Llama.generate, not create_completion: the latter samples past max_tokens while the text ends inside
        # a UTF-8 character (33-34 tokens for 32 asked). One chunk per sampled token, exactly max_tokens.
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        sampled = 0
        tokens = llm.generate(prompt, temp=0.0, logits_processor=llama_cpp.LogitsProcessorList([no_eog]))
        try:
            for token in tokens:
                sampled += 1
                yield Chunk(tokens=1, text=text.decode(llm.detokenize([token])))
                if sampled >= request.max_tokens:
                    break
        finally:
            tokens.close()
        perf = llama_cpp.llama_perf_context(llm.ctx)
        # the first decode call of a prefix hit re-evaluates the suffix, counted in n_p_eval
        cached = max(len(prompt) - perf.n_p_eval, 0)
        yield Usage(prompt_tokens=len(prompt), output_tokens=sampled,
                    extra={"prompt_evaluated": perf.n_p_eval, "prompt_cached": cached, "cached_tokens": cached,
                           "llama_prompt_ms": perf.t_p_eval_ms, "llama_decode_ms": perf.t_eval_ms,
                           "llama_decode_calls": perf.n_eval, **self.kv(llm.n_tokens), **self.rope})

    def kv(self, tokens: int) -> dict:
        """llama.cpp's own KV buffer (allocated at load for n_ctx cells) and the cells this request filled."""
        return {"kv_buffer_bytes": self.buffers.get("kv_buffer_bytes"), "kv_cells": self.llm.n_ctx(),
                "kv_tokens": int(tokens)}

    def memory(self) -> dict[str, int]:
        return dict(self.buffers)

    def close(self) -> None:
        self.llm.close()


class ServerSession(Session):
    """A running llama-server; requests stream over /v1/completions or /v1/chat/completions."""

    def __init__(self, server: Server, model: str, timeout_s: float, rope: dict | None = None, n_ctx: int = 0):
        self.server, self.model, self.timeout_s = server, model, timeout_s
        self.rope, self.n_ctx = rope or {}, n_ctx
        self.pid = server.pid
        self.client = session_client(timeout_s)
        self.target = Target(server.base_url, model, extra_body={"ignore_eos": True, "cache_prompt": False},
                             timeout_s=timeout_s)
        self.buffers = llamacpp_build.buffer_sizes(server.log_path.read_text(errors="replace"))

    def exited(self) -> bool:
        """True once the server process has exited (waits a moment: a dropped stream comes before the exit)."""
        try:
            self.server.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return False
        return True

    def died(self) -> ServerDied:
        return ServerDied(f"llama-server exited with code {self.server.proc.returncode} mid-run; "
                          f"log {self.server.log_path}:\n{log_tail(self.server.log_path)}")

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        if not self.server.alive():
            raise self.died()
        # timings_per_token: every event carries predicted_n, the server's own count of tokens so far
        extra = {"ignore_eos": True, "cache_prompt": request.reuse_cache, "timings_per_token": True}
        try:
            for item in stream_openai(self.server.base_url, self.model, request, chat=request.chat,
                                      timeout_s=self.timeout_s, extra_body=extra, client=self.client):
                if isinstance(item, Usage):    # the slot's reused prefix, as llama-server reports it
                    details = (item.extra.get("usage") or {}).get("prompt_tokens_details") or {}
                    item = Usage(item.prompt_tokens, item.output_tokens,
                                 {**item.extra, "cached_tokens": details.get("cached_tokens"),
                                  "kv_buffer_bytes": self.buffers.get("kv_buffer_bytes"), "kv_cells": self.n_ctx,
                                  "kv_tokens": item.prompt_tokens + item.output_tokens, **self.rope})
                yield item
        except ServerError:
            if self.exited():
                raise self.died() from None
            raise

    def memory(self) -> dict[str, int]:
        return dict(self.buffers)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


def _capture_load(make):
    """Call make() while llama.cpp's log goes to a string instead of stderr; return (result, log)."""
    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(_level, text, _user_data):
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        return make(), "".join(lines)
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


@contextlib.contextmanager
def one_output_per_sequence():
    """Llama() reserving outputs as llama-server does (n_outputs_max = one per sequence, here 1; the server:
    one per slot). llama-cpp-python leaves n_outputs_max 0 (= n_batch): its compute buffer then reserves 512
    logit rows, +261 MiB for a 151k vocabulary that a one-output request never uses. Llama() takes no such
    argument, so its default-params call is wrapped while it builds the context."""
    import llama_cpp.llama_cpp as low

    default = low.llama_context_default_params

    def params():
        p = default()
        p.n_outputs_max = p.n_outputs_max_per_seq = 1
        return p

    low.llama_context_default_params = params
    try:
        yield
    finally:
        low.llama_context_default_params = default


@register
class LlamaCppRuntime(Runtime):
    name = "llamacpp"
    settings: LlamacppEngine
    declared = {"quantization": "GGUF F16/BF16, Q8_0, k-quants (Q6_K..Q2_K), i-quants",
                "kv_cache": "KV allocated for n_ctx at load (no paging); in-process Llama keeps the last prompt's KV "
                            "and reuses its longest common prefix (Llama.reset() for no-reuse requests); llama-server "
                            "reuses a slot's prefix with cache_prompt (usage.prompt_tokens_details.cached_tokens), one "
                            "KV pool for the --parallel slots (--kv-unified); context shift only while generating "
                            "(a prompt longer than n_ctx is refused); YaRN rope scaling (--rope-scaling yarn)",
                "streaming": "token stream in-process; SSE from llama-server",
                "api": "OpenAI-compatible llama-server (/v1/completions, /v1/chat/completions)",
                "deployment": "C/C++ library and binaries (CPU, Metal, CUDA, Vulkan); Python bindings built from source"}

    @property
    def threads(self) -> int:
        return self.settings.n_threads or os.cpu_count() or 1

    @property
    def flash_attn(self) -> bool:
        return self.settings.flash_attn

    def probe(self) -> Probe:
        try:
            server = llamacpp_build.tool("llama-server")
            import llama_cpp
        except (llamacpp_build.LlamaCppMissing, ImportError, OSError, RuntimeError) as exc:
            reason = str(exc) if isinstance(exc, llamacpp_build.LlamaCppMissing) else \
                f"llama_cpp cannot be imported ({exc}): {llamacpp_build.FIX}"
            return Probe(False, reason)
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        device = ("metal" if platform.system() == "Darwin" else "gpu") if gpu else f"cpu ({platform.machine()})"
        memory = ("mps" if platform.system() == "Darwin" else "cuda") if gpu else "cpu"   # Apple: unified memory
        return Probe(True, version=f"llama-cpp-python {llama_cpp.__version__} (llama.cpp vendored; {server.name} "
                                   f"from the same source)",
                     device=device, memory=memory,
                     capabilities={"batching": "continuous batching over --parallel slots (server)",
                                   "system_info": llama_cpp.llama_print_system_info().decode().strip()})

    def load(self, artifact: Artifact, transport: str) -> Session:
        if artifact.format != "gguf":
            raise RuntimeUnavailable(f"llama.cpp loads GGUF artifacts, not {artifact.format!r}")
        if transport == "inprocess":
            return self._load_inprocess(artifact)
        if transport == "server":
            return self._load_server(artifact)
        raise RuntimeUnavailable(f"llama.cpp has no {transport!r} transport")

    def _load_inprocess(self, artifact: Artifact) -> Session:
        try:
            import llama_cpp
        except (ImportError, OSError, RuntimeError) as exc:
            raise RuntimeUnavailable(f"llama_cpp cannot be imported ({exc}): {llamacpp_build.FIX}") from exc
        s = self.settings
        rope = {}
        if s.rope_scaling:
            rope = {"rope_scaling_type": ROPE_TYPES[s.rope_scaling]}
            if s.rope_scale:
                rope["rope_freq_scale"] = 1.0 / s.rope_scale
            if s.yarn_orig_ctx:
                rope["yarn_orig_ctx"] = s.yarn_orig_ctx
        with one_output_per_sequence():
            llm, log = _capture_load(lambda: llama_cpp.Llama(
                model_path=artifact.path, n_ctx=s.n_ctx, n_batch=s.n_batch,
                n_ubatch=s.n_ubatch, n_threads=self.threads, n_threads_batch=self.threads,
                n_gpu_layers=s.n_gpu_layers, flash_attn=self.flash_attn, verbose=False, **rope))
        return InProcessSession(llm, log, self.rope_record())

    def rope_record(self) -> dict:
        """The rope scaling in force, for the rows' extra (empty: the model's own)."""
        s = self.settings
        if not s.rope_scaling:
            return {}
        return {"rope_scaling": s.rope_scaling, "rope_scale": s.rope_scale, "yarn_orig_ctx": s.yarn_orig_ctx}

    def rope_argv(self) -> list[str]:
        s = self.settings
        if not s.rope_scaling:
            return []
        argv = ["--rope-scaling", s.rope_scaling]
        if s.rope_scale:
            argv += ["--rope-scale", str(s.rope_scale).removesuffix(".0")]    # 4, as written in the conf
        if s.yarn_orig_ctx:
            argv += ["--yarn-orig-ctx", str(s.yarn_orig_ctx)]
        return argv

    def server_argv(self, artifact: Artifact) -> list[str]:
        s = self.settings
        return [str(llamacpp_build.tool("llama-server")), "-m", artifact.path, "--host", "127.0.0.1",
                "--port", "{port}", "--alias", self.name, "-t", str(self.threads), "-tb", str(self.threads),
                "-c", str(s.n_ctx), "-b", str(s.n_batch),
                "-ub", str(s.n_ubatch), "-fa", "on" if self.flash_attn else "off",
                "-ngl", str(s.n_gpu_layers), "--parallel", str(s.parallel),
                "--kv-unified",   # one KV pool for all slots: a request may use all of n_ctx, not n_ctx/parallel
                *self.rope_argv(),
                "-lv", "4"]   # verbosity 4 logs the model/KV/compute buffer sizes

    def _load_server(self, artifact: Artifact) -> Session:
        s = self.settings
        log_path = Path(s.log_dir) / f"llama-server-{Path(artifact.path).stem}.log"
        server = Server(self.server_argv(artifact), log_path, ready_path="/health",
                        ready_timeout_s=s.server_ready_timeout_s)
        server.start()
        return ServerSession(server, self.name, s.request_timeout_s, self.rope_record(), s.n_ctx)

    def bench(self, artifact: Artifact, prompt_tokens: int, n_gen: int) -> dict:
        """llama-bench on a GGUF file with the session's settings: prefill tok/s of a prompt_tokens prompt
        (-p) and decode tok/s of n_gen tokens after a prompt_tokens context (-n with -d), as the pipeline does."""
        s = self.settings
        reps = s.bench_repetitions
        row = {"kind": "llama-bench fidelity", "model": artifact.model, "quant": artifact.quant,
               "path": artifact.path, "prompt_tokens": prompt_tokens, "n_gen": n_gen, "threads": self.threads,
               "repetitions": reps}
        base = [str(llamacpp_build.tool("llama-bench")), "-m", artifact.path, "-t", str(self.threads),
                "-r", str(reps), "-b", str(s.n_batch), "-ub", str(s.n_ubatch),
                "-fa", "on" if self.flash_attn else "off", "-ngl", str(s.n_gpu_layers), "-o", "json"]
        for kind, shape in (("prefill", ["-p", str(prompt_tokens), "-n", "0"]),
                            ("decode", ["-p", "0", "-n", str(n_gen), "-d", str(prompt_tokens)])):
            proc = subprocess.run(base + shape, capture_output=True, text=True, timeout=s.bench_timeout_s)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
                return {**row, "flag": f"llama-bench {kind} failed (exit {proc.returncode}): {tail[0]}"}
            (test,) = json.loads(proc.stdout)
            row[f"bench_{kind}_tps"] = float(test["avg_ts"])
            row[f"bench_{kind}_tps_std"] = float(test["stddev_ts"])
            row["build_commit"] = test.get("build_commit", "")
        return row

    def window_references(self, artifact: Artifact, requests: list[Request]) -> list[dict]:
        """llama-bench on the window's GGUF at each cold (prompt length, output length) shape of its requests."""
        limit = self.settings.bench_max_prompt_tokens    # long prompts: llama-bench would double the window
        shapes = sorted({(len(r.prompt_ids), r.max_tokens) for r in requests
                         if r.prompt_ids and not r.chat and not r.reuse_cache
                         and (limit is None or len(r.prompt_ids) <= limit)})
        rows = []
        for prompt_tokens, n_gen in shapes:
            try:
                rows.append(self.bench(artifact, prompt_tokens, n_gen))
            except (llamacpp_build.LlamaCppMissing, subprocess.TimeoutExpired, ValueError) as exc:
                rows.append({"kind": "llama-bench fidelity", "model": artifact.model, "quant": artifact.quant,
                             "path": artifact.path, "prompt_tokens": prompt_tokens, "n_gen": n_gen,
                             "threads": self.threads, "flag": f"llama-bench not run: {exc}"})
        return rows
