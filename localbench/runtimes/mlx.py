"""MLX (mlx-lm): in-process through `mlx_lm.stream_generate`, server through `mlx_lm.server`.

Install: `mlx[cpu]` on Linux, plain `mlx` on macOS (Metal), `mlx[cuda]` on CUDA hosts; plus `mlx-lm`.
Length is forced by masking the EOS ids: a logits processor in-process, `logit_bias` on the server
(mlx_lm.server has no ignore_eos). Output token counts are mlx-lm's own (generation_tokens, usage);
its generation_tps is never used (it counts one token too many).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterator

from localbench.config.engines import MlxEngine
from localbench.core.types import Artifact, Chunk, Probe, Request, RuntimeUnavailable, Usage
from localbench.runtimes.base import Runtime, Session, register
from localbench.transport.clients import Target, session_client, stream_openai
from localbench.transport.servers import Server

INSTALL_HINT = "pip install mlx-lm plus 'mlx[cpu]' (Linux), 'mlx' (macOS/Metal) or 'mlx[cuda]' (CUDA)"
EOS_BIAS = -1e9   # logit_bias the server adds to every EOS id (JSON has no -inf)


def device_name() -> str:
    """MLX's default device, e.g. 'gpu (metal: Apple M2 Max)' or 'cpu (Intel Xeon)'."""
    import mlx.core as mx

    dev = mx.default_device()
    if dev.type == mx.DeviceType.gpu:
        backend = "metal" if mx.metal.is_available() else "cuda"
    else:
        backend = "cpu"
    name = mx.device_info().get("device_name", "")
    return f"{dev.type.name} ({backend}: {name})" if name else f"{dev.type.name} ({backend})"


def no_eos_processor(eos_ids: list[int]):
    """A logits processor that makes every EOS id impossible, so generation runs to max_tokens."""
    import mlx.core as mx

    idx = mx.array(sorted(eos_ids))

    def mask(_tokens, logits):
        logits[:, idx] = -float("inf")
        return logits
    return mask


def rope_view(artifact: Artifact, rope: dict | None) -> Path | None:
    """A temporary folder that mlx_lm loads as `artifact` with `rope` (e.g. YaRN x4 past the trained context) in its
    config: links to its files, config.json rewritten with the context extended as transformers does (mlx_lm.server
    takes no config override, so both transports load this folder; drop_view removes it). None without `rope`."""
    if not rope:
        return None
    src = Path(artifact.path)
    view = Path(tempfile.mkdtemp(prefix="lb-mlx-rope-")) / src.name     # the same name: logs and model id unchanged
    view.mkdir()
    for f in src.iterdir():
        if f.name != "config.json":
            (view / f.name).symlink_to(f.resolve())
    config = {**json.loads((src / "config.json").read_text()), "rope_scaling": dict(rope)}
    if rope.get("factor") and rope.get("original_max_position_embeddings"):
        config["max_position_embeddings"] = int(rope["factor"] * rope["original_max_position_embeddings"])
    (view / "config.json").write_text(json.dumps(config, indent=2))
    return view


def drop_view(view: Path | None) -> None:
    """Remove a rope_view folder (its links only: the model's files stay)."""
    if view:
        shutil.rmtree(view.parent, ignore_errors=True)


def kv_dtype_bytes(cache: list) -> int | None:
    """Bytes per element of the KV cache's keys (None before any token is in it)."""
    keys = getattr(cache[0], "keys", None) if cache else None
    return int(keys.dtype.size) if keys is not None and hasattr(keys, "dtype") else None


def prompt_ids_of(tokenizer, request: Request) -> list[int]:
    """The exact prompt ids every runtime runs (chat prompts arrive already rendered with the template)."""
    return list(request.prompt_ids) if request.prompt_ids else tokenizer.encode(request.prompt_text)


class InprocessSession(Session):
    """The model loaded in this process; greedy decoding of exactly max_tokens tokens."""

    def __init__(self, artifact: Artifact, settings: MlxEngine):
        import mlx.core as mx
        from mlx_lm import load
        from mlx_lm.sample_utils import make_sampler

        self.mx = mx
        self.rope, self.view = dict(settings.rope_scaling or {}), None     # the view: set by MLX.load, removed at close
        self.model, self.tokenizer = load(artifact.path)
        # arrays kept outside the parameters (YaRN's rope frequencies) are evaluated on this thread: left lazy, the
        # request's own thread (measure.executor) would meet them with no stream ("no Stream(gpu, 0) in current thread")
        mx.eval([v for m in self.model.modules() for v in m.values() if isinstance(v, mx.array)])
        self.sampler = make_sampler(temp=0.0)
        self.no_eos = no_eos_processor(list(self.tokenizer.eos_token_ids))
        self.max_kv_size = settings.max_kv_size
        self.prefill_step_size = settings.prefill_step_size
        self._cache: list | None = None        # kept between requests with reuse_cache
        self._cache_tokens: list[int] = []

    def _cache_for(self, prompt: list[int], reuse: bool) -> tuple[list, int]:
        """(KV cache, tokens of `prompt` it already holds): the kept cache trimmed to the common prefix."""
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache
        from mlx_lm.utils import common_prefix_len

        if reuse and self._cache is not None and can_trim_prompt_cache(self._cache):
            common = min(common_prefix_len(self._cache_tokens, prompt), len(prompt) - 1)
            trim_prompt_cache(self._cache, len(self._cache_tokens) - common)
            return self._cache, common
        return make_prompt_cache(self.model, max_kv_size=self.max_kv_size), 0

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        from mlx_lm import stream_generate

        prompt = prompt_ids_of(self.tokenizer, request)
        cache, cached = self._cache_for(prompt, request.reuse_cache)
        self.mx.reset_peak_memory()
        last = None
        generated: list[int] = []
        counted = 0     # tokens already carried by a chunk; a token whose text is held back rides the next one
        for resp in stream_generate(self.model, self.tokenizer, prompt[cached:], max_tokens=request.max_tokens,
                                    sampler=self.sampler, logits_processors=[self.no_eos], prompt_cache=cache,
                                    prefill_step_size=self.prefill_step_size):
            last = resp
            generated.append(resp.token)
            if resp.text:
                yield Chunk(tokens=resp.generation_tokens - counted, text=resp.text)
                counted = resp.generation_tokens
        if last is None or last.generation_tokens != request.max_tokens or last.finish_reason != "length":
            raise RuntimeError(f"mlx_lm generated {last.generation_tokens if last else 0} tokens "
                               f"(finish {last.finish_reason if last else None}), expected exactly "
                               f"{request.max_tokens}")
        self._keep_cache(cache, prompt + generated, request.reuse_cache)
        extra: dict[str, Any] = {"cached_tokens": cached, "force_length": "logits processor masking EOS",
                                 "kv_cache_bytes": int(sum(getattr(c, "nbytes", 0) for c in cache)),
                                 "kv_cache_tokens": int(cache[0].offset) if cache else 0,
                                 "kv_dtype_bytes": kv_dtype_bytes(cache),
                                 **({"rope_scaling": self.rope} if self.rope else {})}
        if self.max_kv_size:
            extra |= {"max_kv_size": self.max_kv_size,
                      "prompt_exceeds_kv_window": len(prompt) > self.max_kv_size,
                      "kv_rotated": len(prompt) + request.max_tokens > self.max_kv_size}
        yield Usage(prompt_tokens=len(prompt), output_tokens=last.generation_tokens, extra=extra)

    def _keep_cache(self, cache: list, tokens: list[int], reuse: bool) -> None:
        """Keep the KV cache (and the tokens it holds) for the next reuse_cache request."""
        if not reuse:
            self._cache, self._cache_tokens = None, []
            return
        offset = cache[0].offset
        if offset > len(tokens):
            self._cache, self._cache_tokens = None, []
            return
        self._cache, self._cache_tokens = cache, tokens[:offset]

    def memory(self) -> dict[str, int]:
        """Peak MLX memory since the last request started (reset per request), and what is active now."""
        return {"device_mem_bytes": int(self.mx.get_peak_memory()),
                "active_mem_bytes": int(self.mx.get_active_memory())}

    def close(self) -> None:
        self.model = self.tokenizer = self._cache = None
        self.mx.clear_cache()
        drop_view(self.view)


class ServerSession(Session):
    """`python -m mlx_lm server` on 127.0.0.1 (a free port), streamed through the OpenAI API."""

    def __init__(self, artifact: Artifact, settings: MlxEngine):
        from mlx_lm.utils import load_tokenizer

        s = settings
        self.rope, self.view = dict(s.rope_scaling or {}), None     # the view: set by MLX.load, removed at close
        self.eos_ids = sorted(load_tokenizer(Path(artifact.path)).eos_token_ids)
        self.timeout_s = s.request_timeout_s
        log_dir = Path(s.log_dir)
        hub = Path(s.hf_hub_cache or log_dir / "hf_hub_cache")
        hub.mkdir(parents=True, exist_ok=True)    # /v1/models scans HF_HUB_CACHE and fails if it is missing
        argv = [sys.executable, "-m", "mlx_lm", "server", "--model", artifact.path,
                "--host", "127.0.0.1", "--port", "{port}",
                "--prompt-cache-size", str(s.server_prompt_cache_size),
                "--decode-concurrency", str(s.decode_concurrency),
                "--prompt-concurrency", str(s.prompt_concurrency),
                "--prefill-step-size", str(s.prefill_step_size),
                "--log-level", s.server_log_level,
                *s.server_args]
        name = f"{Path(artifact.path).name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
        self.server = Server(argv, log_dir / name, ready_path="/v1/models", env={"HF_HUB_CACHE": str(hub)},
                             ready_timeout_s=s.ready_timeout_s).start()
        self.pid = self.server.pid
        self.cold_start_s = self.server.cold_start_s
        self.log_path = self.server.log_path
        self.extra_body = {"logit_bias": {str(t): EOS_BIAS for t in self.eos_ids}}
        # mlx_lm.server tokenizes `prompt` itself and accepts no token-id list: send the text
        self.target = Target(self.server.base_url, "default_model", extra_body=self.extra_body,
                             timeout_s=self.timeout_s, text_prompt=True)
        self.client = session_client(self.timeout_s)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        text_request = dataclasses.replace(request, prompt_ids=())
        for item in stream_openai(self.server.base_url, "default_model", text_request, chat=request.chat,
                                  timeout_s=self.timeout_s, extra_body=self.extra_body, client=self.client):
            if isinstance(item, Usage):
                if item.output_tokens != request.max_tokens:
                    raise RuntimeError(f"mlx_lm.server generated {item.output_tokens} tokens, expected exactly "
                                       f"{request.max_tokens}")
                details = item.extra.get("usage", {}).get("prompt_tokens_details") or {}
                item = Usage(item.prompt_tokens, item.output_tokens,
                             {**item.extra, "cached_tokens": details.get("cached_tokens", 0),
                              "force_length": "logit_bias on EOS ids",
                              **({"rope_scaling": self.rope} if self.rope else {})})
            yield item

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        drop_view(self.view)


@register
class MLX(Runtime):
    """mlx-lm on MLX's default device (Metal on Apple Silicon, CPU or CUDA elsewhere)."""

    name = "mlx"
    settings: MlxEngine
    declared = {"quantization": "bf16/fp16, 8/6/5/4/3/2-bit affine with a group size, mixed-bit recipes (mixed_3_6 ...)",
                "kv_cache": "prompt-cache objects in-process (the kept cache trimmed to the common prefix), "
                            "prompt-cache files (save/load_prompt_cache), rotating KV window (max_kv_size, in-process), "
                            "server LRU prefix cache (--prompt-cache-size; usage cached_tokens)",
                "streaming": "stream_generate in-process; SSE from mlx_lm.server",
                "api": "OpenAI-compatible mlx_lm.server (/v1/completions, /v1/chat/completions)",
                "deployment": "pip wheels: Metal on macOS, CPU (mlx[cpu]) or CUDA (mlx[cuda]) on Linux"}

    def probe(self) -> Probe:
        try:
            import mlx.core as mx
            import mlx_lm
            import mlx_lm.generate  # noqa: F401 - imported here, before the in-process memory baseline
        except ImportError as exc:
            return Probe(False, reason=f"mlx/mlx-lm not importable ({exc}): {INSTALL_HINT}")
        s = self.settings
        return Probe(True, version=f"mlx-lm {mlx_lm.__version__}, mlx {mx.__version__}", device=device_name(),
                     capabilities={
                         "transports": "inprocess, server",
                         "quants": "bf16, fp16, fp32, 8/6/5/4/3/2bit, mixed_2_6/3_4/3_6/4_6 (affine)",
                         "group_size": s.group_size,
                         "force_length": "inprocess: EOS masked by a logits processor; server: logit_bias "
                                         f"{EOS_BIAS:g} on EOS ids (mlx_lm.server has no ignore_eos)",
                         "server_batching": "continuous batching (BatchGenerator): decode "
                                            f"{s.decode_concurrency}, prefill "
                                            f"{s.prompt_concurrency} requests at once; "
                                            "off (sequential) with --kv-bits, a seed or a draft model",
                         "server_prefix_cache": f"LRU KV prefix cache, {s.server_prompt_cache_size} "
                                                "entries (--prompt-cache-size)",
                         "rotating_kv_cache": f"inprocess only, max_kv_size={s.max_kv_size} "
                                              "(mlx_lm.server has no --max-kv-size)",
                         "prompt_cache_files": "make/save/load_prompt_cache (safetensors)",
                         "server_prompt_input": "text only (token-id prompts are not accepted)",
                         "server_chunk_tokens": "one SSE event per token with text; tokens that decode to "
                                                "no text are merged into the next event",
                     })

    def load(self, artifact: Artifact, transport: str) -> Session:
        if not self.probe().available:
            raise RuntimeUnavailable(self.probe().reason)
        if artifact.format not in self.formats:
            raise RuntimeUnavailable(f"mlx loads format 'mlx', not {artifact.format!r}: convert it with "
                                     "localbench.artifacts.converters.mlx")
        if transport == "inprocess":
            make = partial(InprocessSession, settings=self.settings)
        elif transport == "inprocess-rotating":     # the same in-process session with a rotating KV window
            make = partial(InprocessSession, settings=self.settings.model_copy(
                update={"max_kv_size": self.settings.rotating_kv_size}))
        elif transport == "server":
            make = partial(ServerSession, settings=self.settings)
        else:
            raise RuntimeUnavailable(f"mlx has no transport {transport!r}: use one of {', '.join(self.transports)}")
        view = rope_view(artifact, self.settings.rope_scaling)
        try:
            session = make(dataclasses.replace(artifact, path=str(view)) if view else artifact)
        except BaseException:
            drop_view(view)
            raise
        session.view = view
        return session

    def extra_measurements(self, artifacts: list[Artifact], requests: list[Request], out_dir: Path) -> list[dict]:
        """Prompt-cache files: TTFT of prefix+suffix requests cold vs. with the saved prefix cache loaded."""
        rows, quants = [], self.settings.prompt_cache_quants
        for art in artifacts:
            if art.format not in self.formats or (quants and art.quant not in quants):
                continue
            try:
                rows.append(prompt_cache_effect(art, requests, self.settings))
            except Exception as exc:  # a failed measurement is a row, never a lost run
                rows.append({"kind": "mlx prompt cache", "model": art.model, "quant": art.quant,
                             "flag": f"failed: {type(exc).__name__}: {exc}"})
        return rows


def token_pool(tokenizer, requests: list[Request], n: int) -> list[int]:
    """`n` deterministic token ids: the requests' prompt ids (or a fixed text) repeated."""
    pool = [t for r in requests for t in r.prompt_ids] or \
        tokenizer.encode("def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n")
    return (pool * (n // len(pool) + 1))[:n]


def first_token_s(model, tokenizer, prompt: list[int], cache: list | None, max_tokens: int, no_eos,
                  sampler, t0: int | None = None) -> tuple[float, int]:
    """Run one request; return (seconds from `t0` (default: the call) to its first token, that token)."""
    from mlx_lm import stream_generate

    t0 = t0 or time.perf_counter_ns()
    ttft, first = 0.0, -1
    for i, resp in enumerate(stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler,
                                             logits_processors=[no_eos], prompt_cache=cache)):
        if i == 0:
            ttft, first = (time.perf_counter_ns() - t0) * 1e-9, resp.token
    return ttft, first


def prompt_cache_effect(art: Artifact, requests: list[Request], settings: MlxEngine) -> dict:
    """Save a long shared prefix once to a prompt-cache file, then time requests with and without it.

    The file is written mode 0600 in a fresh 0700 folder under settings.prompt_cache_dir and deleted
    afterwards unless settings.prompt_cache_keep; the cached TTFT includes loading the file.
    """
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import load_prompt_cache, make_prompt_cache, save_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    n_prefix, n_suffix = settings.prompt_cache_prefix_tokens, settings.prompt_cache_suffix_tokens
    trials, max_tokens = settings.prompt_cache_trials, settings.prompt_cache_max_tokens
    keep, base = settings.prompt_cache_keep, settings.prompt_cache_dir
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="mlx-prompt-cache-", dir=base))   # mode 0700
    model, tokenizer = load(art.path)
    sampler, no_eos = make_sampler(temp=0.0), no_eos_processor(list(tokenizer.eos_token_ids))
    pool = token_pool(tokenizer, requests, n_prefix + (trials + 1) * n_suffix)
    prefix = pool[:n_prefix]
    suffixes = [pool[n_prefix + i * n_suffix: n_prefix + (i + 1) * n_suffix] for i in range(trials + 1)]
    path = folder / f"{art.model}-{art.quant}.safetensors".replace("/", "_")
    try:
        t0 = time.perf_counter()
        cache = make_prompt_cache(model)
        for _ in generate_step(mx.array(prefix), model, max_tokens=0, prompt_cache=cache):
            pass
        save_prompt_cache(str(path), cache, {"model": art.model, "quant": art.quant,
                                             "prefix_tokens": str(n_prefix)})
        os.chmod(path, 0o600)
        save_s = time.perf_counter() - t0
        del cache
        first_token_s(model, tokenizer, prefix + suffixes[0], None, max_tokens, no_eos, sampler)  # warm-up
        cold, warm, same = [], [], True
        for suffix in suffixes[1:]:
            t_cold, tok_cold = first_token_s(model, tokenizer, prefix + suffix, None, max_tokens, no_eos, sampler)
            t0 = time.perf_counter_ns()    # loading the file counts toward the cached TTFT
            loaded = load_prompt_cache(str(path))
            t_warm, tok_warm = first_token_s(model, tokenizer, suffix, loaded, max_tokens, no_eos, sampler, t0)
            cold.append(t_cold)
            warm.append(t_warm)
            same = same and tok_cold == tok_warm
        row = {"kind": "mlx prompt cache", "model": art.model, "quant": art.quant, "prefix_tokens": n_prefix,
               "suffix_tokens": n_suffix, "trials": trials,
               "ttft_s_without_cache": sum(cold) / trials, "ttft_s_with_cache": sum(warm) / trials,
               "speedup": (sum(cold) / sum(warm)) if sum(warm) else float("nan"),
               "cache_file_bytes": path.stat().st_size, "cache_file_mode": oct(path.stat().st_mode & 0o777),
               "cache_save_s": save_s, "same_first_token": same, "kept": str(path) if keep else ""}
        if not same:
            row["flag"] = "first token differs with the cache file loaded"
        return row
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
