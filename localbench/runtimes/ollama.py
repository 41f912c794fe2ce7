"""Ollama: `ollama serve` launched by the pipeline, the pipeline's own GGUF imported with a Modelfile.

Per session (one artifact, one transport) the pipeline starts `ollama serve` on a free 127.0.0.1 port
(OLLAMA_HOST) with its own models folder (engine.ollama.models_dir, under the project), imports the GGUF
with `ollama create` (FROM <gguf> plus num_ctx / num_thread / num_batch as PARAMETERs, so every request
hits the same runner), loads it with an empty /api/generate, and on close deletes the models it created
(unless keep_models) and kills the server's process group. Cold start = spawn -> ready -> created ->
loaded; the three parts are kept apart in every row's Usage.extra['session'] (serve_s, create_s, load_s).
Chat turns use the model's own chat template, turned into a Go TEMPLATE (go_template) so /api/chat sends
the same tokens as the plan's templated prompt. Transports: `server` = the native API (/api/generate with raw: true, no template, for prompts; /api/chat
for chat turns; NDJSON), `openai` = its OpenAI-compatible /v1 (completions on a second model name whose
TEMPLATE is `{{ .Prompt }}`, so the prompt is sent as is, as llama-server gets it; chat completions on
the first). Ollama's own durations (load, prompt_eval, eval; ns) are in Usage.extra['ollama'].

Forced length: Ollama has no ignore_eos or logit bias; its llama.cpp runner stops at any end-of-generation
token (runner/llamarunner/runner.go: `if s.model.TokenIsEog(token)`, EOG set from the GGUF's vocab). What
forces the length here is num_predict = max_tokens with the stop sequences cleared (options.stop = []) and,
for prompts, raw mode (no chat template inviting an end of turn); a generation that still ends early is a
`short` row, never ok. Prompt cache: Ollama always reuses the longest cached prefix of a slot (no API to turn
it off); after every request that does not ask for reuse, and before one that follows a reuse request, the
session sends a 1-token flush request (outside the measured stream's timings), so a single-stream request gets
reuse only where it asks for it. Its API reports no reused-token count (prompt_eval_count is the whole prompt):
with `debug` (OLLAMA_DEBUG=1) the runner logs each request's cache slot (runner/llamarunner/cache.go: `used` =
prompt tokens taken from the cache), read into Usage.extra['cached_tokens'].
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import httpx

from localbench.builds import llamacpp as llamacpp_build
from localbench.builds import ollama as ollama_build
from localbench.config.engines import OllamaEngine
from localbench.core.types import Artifact, Chunk, Probe, Request, RuntimeUnavailable, Usage
from localbench.runtimes.base import Runtime, Session, register
from localbench.transport.clients import ServerError, Target, session_client, stream_ollama, stream_openai
from localbench.transport.servers import Server, ServerDied, log_tail

ROOT = ollama_build.CACHE_DIR.parents[1]
INSTALL_HINT = f"{ollama_build.FIX}; on macOS `brew install ollama`"
CACHE_SLOT = re.compile(r'msg="loading cache slot" .*?\bused=(\d+)')    # the runner's debug line per request
FLUSH_PROMPT = "\u2042"   # one rare symbol no plan prompt starts with: overwrites the slot's cached prefix
RAW_TEMPLATE = "{{ .Prompt }}"


def binary(settings: OllamaEngine) -> str | None:
    """engine.ollama.binary, else the binary `make install` built, else `ollama` on PATH."""
    return settings.binary or ollama_build.executable()


def cuda_backend(exe: str) -> Path | None:
    """The CUDA backend next to a launched binary (lib/ollama/cuda_v*/libggml-cuda.so, Ollama's Linux layout:
    benchmarks/gpu/build_ollama.py builds it so), None for a CPU-only build."""
    found = sorted(Path(exe).resolve().parent.parent.glob("lib/ollama/cuda_v*/libggml-cuda.so*"))
    return found[0] if found else None


def server_version(host: str) -> str | None:
    """The version an Ollama server at `host` reports, None when none answers."""
    try:
        resp = httpx.get(host.rstrip("/") + "/api/version", timeout=2.0)
        return resp.json().get("version") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def system_info(log: str) -> str:
    """The last `msg=system` line of an Ollama log (ggml's CPU features, e.g. CPU.0.AVX2=1), '' if none."""
    lines = [line for line in log.splitlines() if "msg=system" in line]
    return lines[-1].split("msg=system", 1)[1].strip() if lines else ""


@functools.lru_cache(maxsize=8)
def go_template(tokenizer_path: str) -> str | None:
    """The model's chat template for user/assistant turns as an Ollama Go TEMPLATE, derived by rendering probe
    conversations with the HF tokenizer (Ollama's own detection only knows templates close to its catalogue:
    Qwen2.5's falls back to `{{ .Prompt }}`); None without a tokenizer or when the pieces do not fit."""
    if not tokenizer_path:
        return None
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(tokenizer_path)

        def render(turns: list[str], gen: bool = False) -> str:
            msgs = [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(turns)]
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

        u, a, v = "\x01", "\x02", "\x03"
        one = render([u])
        head_upre, upost = one.split(u)
        gen = render([u], True)[len(one):]
        apre, apost = render([u, a])[len(one):].split(a)
        upre = render([u, a, v])[len(one + apre + a + apost):].split(v)[0]
        head = head_upre[:len(head_upre) - len(upre)]
        if head + upre != head_upre or render([u, a, v], True) != one + apre + a + apost + upre + v + upost + gen:
            return None
    except Exception:  # noqa: BLE001 - any mismatch: leave the template to Ollama
        return None
    return (head + '{{ range .Messages }}{{ if eq .Role "user" }}' + upre + "{{ .Content }}" + upost +
            '{{ else if eq .Role "assistant" }}' + apre + "{{ .Content }}" + apost + "{{ end }}{{ end }}" + gen)


def modelfile(gguf: Path, params: dict[str, Any], template: str | None = None) -> str:
    text = f"FROM {gguf.resolve()}\n" + "".join(f"PARAMETER {k} {v}\n" for k, v in params.items())
    return text + (f'TEMPLATE """{template}"""\n' if template else "")


class OllamaSession(Session):
    """One artifact on an Ollama server (launched here, or the one at engine.ollama.host if launch is false)."""

    def __init__(self, artifact: Artifact, settings: OllamaEngine, exe: str, transport: str):
        s = settings
        self.transport, self.exe = transport, exe
        self.timeout_s = s.request_timeout_s
        self.keep_alive, self.keep_models = s.keep_alive, s.keep_models
        self.log_dir, self.debug = Path(s.log_dir), s.debug
        self.server, self.created = None, []
        self.timings: dict[str, float] = {}
        name = re.sub(r"[^a-z0-9._-]+", "-", f"localbench-{artifact.model}-{artifact.quant}".lower())
        self.model, self.raw_model = name, f"{name}-raw"
        try:
            if s.launch:
                models = Path(s.models_dir)
                models = models if models.is_absolute() else ROOT / models
                self.server = Server([exe, "serve"], self.log_dir / f"ollama-{name}-{transport}.log",
                                     ready_path="/api/version", ready_timeout_s=s.ready_timeout_s)
                self.server.env.update(ollama_build.server_env(self.server.port, models),
                                       OLLAMA_NUM_PARALLEL=str(s.num_parallel), OLLAMA_KEEP_ALIVE=s.keep_alive,
                                       OLLAMA_FLASH_ATTENTION="1" if s.flash_attention else "0",
                                       OLLAMA_DEBUG="1" if s.debug else "0")
                self.server.start()
                self.host, self.pid = self.server.base_url, self.server.pid
                self.timings["serve_s"] = self.server.cold_start_s
            else:
                self.host, self.external = s.host.rstrip("/"), True
            self.client = session_client(self.timeout_s)
            params = {"num_ctx": s.num_ctx, "num_thread": s.num_thread or os.cpu_count() or 1,
                      "num_batch": s.num_batch}
            template = go_template(artifact.tokenizer_path)     # cached per tokenizer folder
            t0 = time.perf_counter()
            self.create(self.model, modelfile(Path(artifact.path), params, template))
            if transport == "openai":
                self.create(self.raw_model, modelfile(Path(artifact.path), params, RAW_TEMPLATE))
            self.timings["create_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            self.client.post(f"{self.host}/api/generate", json={"model": self.model, "keep_alive": self.keep_alive}
                             ).raise_for_status()      # loads the model now: part of cold start, kept apart
            self.timings["load_s"] = time.perf_counter() - t0
        except BaseException:
            self.close()
            raise
        self.options = {"stop": [], "temperature": 0.0}
        self.kept = False       # the slot holds the last request's prompt because it asked for reuse
        self.extra_body = {"options": self.options, "keep_alive": self.keep_alive}
        # the load sweep runs on the native transport (text prompts; Ollama takes no token-id lists)
        self.target = Target(self.host, self.model, protocol="ollama", extra_body=self.extra_body,
                             timeout_s=self.timeout_s, text_prompt=True) if transport == "server" else None
        self.system = system_info(self.log())

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace") if self.server else ""

    def create(self, name: str, text: str) -> None:
        path = self.log_dir / f"{name}.Modelfile"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        ollama_build.create(self.exe, self.host, name, path)
        self.created.append(name)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:

        if self.server and not self.server.alive():
            raise self.died()
        model = self.raw_model if self.transport == "openai" and not request.chat else self.model
        if not request.reuse_cache and self.kept:
            self.flush(model)       # the slot holds a reuse request's prompt: empty it before this cold one
        self.kept = request.reuse_cache
        log_start = self.server.log_path.stat().st_size if self.server and self.debug else None
        try:
            if self.transport == "openai":
                items = stream_openai(self.host, model, replace(request, prompt_ids=()), chat=request.chat,
                                      timeout_s=self.timeout_s, extra_body={"stop": []}, client=self.client)
            else:
                items = stream_ollama(self.host, model, request, chat=request.chat, timeout_s=self.timeout_s,
                                      extra_body=self.extra_body, client=self.client)
            for item in items:
                if isinstance(item, Usage):
                    item = replace(item, extra={**item.extra, "session": self.timings,
                                                "cached_tokens": self.reused_tokens(log_start)})
                yield item
        except ServerError:
            if self.server and not self.server.alive():
                raise self.died() from None
            raise
        if not request.reuse_cache:
            self.flush(model)

    def reused_tokens(self, log_start: int | None) -> int | None:
        """Prompt tokens the runner took from its cache for the request sent after byte `log_start` of the server
        log: the `used` of the last cache-slot line since (None without the debug log)."""
        if log_start is None:
            return None
        with open(self.server.log_path, "rb") as log:
            log.seek(log_start)
            used = CACHE_SLOT.findall(log.read().decode(errors="replace"))
        return int(used[-1]) if used else None

    def flush(self, model: str) -> None:
        """A 1-token request on the same runner: the slot that held the last prompt now holds FLUSH_PROMPT."""
        self.client.post(f"{self.host}/api/generate", json={
            "model": model, "prompt": FLUSH_PROMPT, "raw": True, "stream": False,
            "keep_alive": self.keep_alive, "options": {**self.options, "num_predict": 1}}).raise_for_status()

    def died(self):
        return ServerDied(f"ollama serve exited with code {self.server.proc.returncode} mid-run; "
                          f"log {self.server.log_path}:\n{log_tail(self.server.log_path)}")

    def placement(self) -> tuple[int, int]:
        """(model bytes, bytes on the GPU) as /api/ps reports the loaded model."""
        for m in self.client.get(f"{self.host}/api/ps", timeout=5.0).json().get("models", []):
            if m.get("name", "").split(":")[0] == self.model:
                return int(m.get("size", 0)), int(m.get("size_vram", 0))
        return 0, 0

    def memory(self) -> dict[str, int]:
        """llama.cpp's buffer sizes from the runner's log (as for llama-server; read once, after the load),
        plus the model's size as /api/ps reports it."""
        if not hasattr(self, "buffers"):

            self.buffers = llamacpp_build.buffer_sizes(self.log())
            try:
                for m in self.client.get(f"{self.host}/api/ps", timeout=5.0).json().get("models", []):
                    if m.get("name", "").split(":")[0] == self.model:
                        self.buffers["ollama_size_bytes"] = int(m.get("size", 0))
            except (httpx.HTTPError, ValueError):
                pass
        return dict(self.buffers)

    def close(self) -> None:
        """Delete the models this session created (unless keep_models), then kill the server's process group."""
        client = getattr(self, "client", None)
        if client is not None:
            for name in ([] if self.keep_models else self.created):
                try:
                    client.request("DELETE", f"{self.host}/api/delete", json={"model": name}, timeout=30.0)
                except httpx.HTTPError:
                    pass
            client.close()
        if self.server:
            self.server.stop()


@register
class Ollama(Runtime):
    """Ollama serving the pipeline's GGUF: native API and its OpenAI-compatible /v1."""

    name = "ollama"
    settings: OllamaEngine
    declared = {"quantization": "GGUF (the pipeline's own, imported with a Modelfile)",
                "kv_cache": "llama.cpp's, num_ctx per slot x OLLAMA_NUM_PARALLEL slots; the longest cached prefix is "
                            "always reused (no switch): a 1-token flush after each no-reuse request and before one that "
                            "follows a reuse request empties the "
                            "slot, so single-stream cells get reuse only where they ask for it; load-sweep "
                            "requests repeat the plan's prompts and may reuse a cached copy; tokens reused: the "
                            "runner's debug log (`used` per cache slot)",
                "streaming": "NDJSON from /api/generate and /api/chat; SSE from /v1",
                "api": "native /api/generate (raw), /api/chat (NDJSON) and an OpenAI-compatible /v1",
                "deployment": "a daemon (`ollama serve`) plus CLI, built here from its Go module; models by Modelfile",
                "forced_length": "no ignore_eos: num_predict with stop sequences cleared, raw prompts; an early "
                                 "end-of-generation token makes the row `short`"}

    def probe(self) -> Probe:
        s = self.settings
        exe = binary(s)
        if not s.launch:
            version = server_version(s.host)
            if version is None:
                return Probe(False, reason=f"no Ollama server reachable at {s.host} and engine.ollama.launch is "
                                           "false; start one with `ollama serve`")
            if exe is None:
                return Probe(False, reason=f"no `ollama` binary (needed for `ollama create`); {INSTALL_HINT}")
        elif exe is None:
            why = ollama_build.skip_reason() or f"Ollama {ollama_build.VERSION} is not built"
            return Probe(False, reason=f"no `ollama` binary: {why}; {INSTALL_HINT}")
        else:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True)
            text = out.stdout + out.stderr     # "client version is X" when a server answers elsewhere
            found = re.search(r"client version is (\S+)", text) or re.search(r"version is (\S+)", text)
            version = found.group(1) if found else "unknown"
        stamp = ollama_build.built() if exe == str(ollama_build.BINARY) else None
        caps = {"force_length": False, "num_ctx": s.num_ctx, "num_parallel": s.num_parallel,
                "binary": exe, "launch": s.launch}
        if stamp:
            caps.update(build={k: stamp[k] for k in ("module", "go", "cgo_cflags", "build_s", "built_at", "cpu")})
        cuda = cuda_backend(exe) if s.launch else None
        if cuda:
            caps.update(cuda_backend=str(cuda))
        device = f"cuda (ollama's llama.cpp runner, {cuda.parent.name})" if cuda else "cpu (ollama's llama.cpp runner)"
        return Probe(True, version=f"ollama {version}", device=device, capabilities=caps)

    def load(self, artifact: Artifact, transport: str) -> Session:
        exe = binary(self.settings)
        if exe is None:
            raise RuntimeUnavailable(f"no `ollama` binary; {INSTALL_HINT}")
        if transport not in self.transports:
            raise RuntimeUnavailable(f"ollama has no {transport!r} transport (server | openai)")
        session = OllamaSession(artifact, self.settings, exe, transport)
        self.system = session.system or getattr(self, "system", "")
        if self.settings.launch and cuda_backend(exe):
            size, vram = session.placement()
            if not vram or vram < size:
                session.close()
                raise RuntimeUnavailable(f"Ollama put {vram / 2**20:,.0f} of {size / 2**20:,.0f} MiB on the GPU "
                                         f"(its CUDA backend did not take the whole model; see its log)")
        return session

    def extra_measurements(self, artifacts: list[Artifact], requests: list[Request], out_dir: Path) -> list[dict]:
        """The build stamp and the system line ggml printed in the server log (its CPU features)."""
        stamp = ollama_build.built() or {}
        return [{"kind": "ollama build", "version": stamp.get("version", ""), "go": stamp.get("go", ""),
                 "build_s": stamp.get("build_s"), "cgo_cflags": stamp.get("cgo_cflags", ""),
                 "cpu_flags": " ".join(stamp.get("cpu", {}).get("flags", [])),
                 "system_info": getattr(self, "system", "")}]
