"""Ollama through its native API (/api/generate, /api/chat; NDJSON), loading the pipeline's own GGUF.

The GGUF is imported with `ollama create` from a Modelfile (FROM <gguf>, PARAMETER num_ctx), so Ollama
runs the same weights as llama.cpp. With no server answering at engine.ollama.host, `ollama serve` is
started on a free 127.0.0.1 port (launch: true) with OLLAMA_NUM_PARALLEL and OLLAMA_KEEP_ALIVE from
settings. Ollama's own load/prompt-eval/eval durations (ns) land in Usage.extra['ollama']. Ollama has no
ignore-EOS option: a generation ending early is reported as `short` by the harness.
Install on macOS: `brew install ollama` (elsewhere: https://ollama.com/download).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx

from localbench.runtimes.base import (Artifact, Chunk, Probe, Request, Runtime, RuntimeUnavailable, Session,
                                      Usage, register)

INSTALL_HINT = "install with `brew install ollama` on macOS (https://ollama.com/download elsewhere)"


def server_version(host: str) -> str | None:
    """The version an Ollama server at `host` reports, None when none answers."""
    try:
        resp = httpx.get(host.rstrip("/") + "/api/version", timeout=2.0)
        return resp.json().get("version") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def modelfile(gguf: Path, num_ctx: int) -> str:
    return f"FROM {gguf.resolve()}\nPARAMETER num_ctx {num_ctx}\n"


class OllamaSession(Session):
    """One imported model on an Ollama server (ours, launched, or the user's)."""

    def __init__(self, artifact: Artifact, settings: dict[str, Any]):
        from localbench.loadgen import Target
        from localbench.servers import Server

        self.settings = settings
        host = str(settings.get("host", "http://127.0.0.1:11434")).rstrip("/")
        log_dir = Path(settings.get("log_dir") or "logs/ollama")
        self.server = None
        if server_version(host) is None:
            self.server = Server(["ollama", "serve"], log_dir / "ollama_serve.log", ready_path="/api/version",
                                 ready_timeout_s=float(settings.get("ready_timeout_s", 120)))
            self.server.env.update(OLLAMA_HOST=f"127.0.0.1:{self.server.port}",
                                   OLLAMA_NUM_PARALLEL=str(settings.get("num_parallel", 1)),
                                   OLLAMA_KEEP_ALIVE=str(settings.get("keep_alive", "5m")))
            self.server.start()
            host, self.pid = self.server.base_url, self.server.pid
        self.host = host
        self.num_ctx = int(settings.get("num_ctx", 4096))
        self.keep_alive = settings.get("keep_alive", "5m")
        self.timeout_s = float(settings.get("request_timeout_s", 600))
        self.model = re.sub(r"[^a-z0-9._-]+", "-", f"localbench-{artifact.model}-{artifact.quant}".lower())
        mf = log_dir / f"{self.model}.Modelfile"
        mf.parent.mkdir(parents=True, exist_ok=True)
        mf.write_text(modelfile(Path(artifact.path), self.num_ctx))
        env_host = host.removeprefix("http://")
        done = subprocess.run(["ollama", "create", self.model, "-f", str(mf)], capture_output=True, text=True,
                              env={**os.environ, "OLLAMA_HOST": env_host})
        if done.returncode:
            self.close()
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"`ollama create {self.model} -f {mf}` failed: {tail[0]}")
        self.extra_body = {"options": {"num_ctx": self.num_ctx}, "keep_alive": self.keep_alive}
        httpx.post(f"{host}/api/generate", json={"model": self.model, "keep_alive": self.keep_alive},
                   timeout=self.timeout_s).raise_for_status()      # loads the model now: part of cold start
        self.target = Target(host, self.model, protocol="ollama", extra_body=self.extra_body,
                             timeout_s=self.timeout_s)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        from localbench.clients import stream_ollama

        yield from stream_ollama(self.host, self.model, request, chat=request.chat, timeout_s=self.timeout_s,
                                 extra_body=self.extra_body)

    def memory(self) -> dict[str, int]:
        """Bytes of the loaded model in device memory (size_vram from /api/ps)."""
        try:
            for m in httpx.get(f"{self.host}/api/ps", timeout=5.0).json().get("models", []):
                if m.get("name", "").split(":")[0] == self.model:
                    return {"device_mem_bytes": int(m.get("size_vram", 0)), "model_bytes": int(m.get("size", 0))}
        except (httpx.HTTPError, ValueError):
            pass
        return {}

    def close(self) -> None:
        if self.server:
            self.server.stop()


@register
class Ollama(Runtime):
    """Ollama serving the pipeline's GGUF (server transport only)."""

    name = "ollama"
    transports = ("server",)
    formats = ("gguf",)
    declared = {"quantization": "GGUF (the pipeline's own, imported with a Modelfile)",
                "kv_cache": "llama.cpp's, per loaded model; keep_alive holds the model in memory",
                "streaming": "NDJSON from /api/generate and /api/chat",
                "api": "native /api/generate, /api/chat (NDJSON) and an OpenAI-compatible /v1",
                "deployment": "a daemon (`ollama serve`) plus CLI; models by Modelfile or registry"}

    def probe(self) -> Probe:
        host = str(self.settings.get("host", "http://127.0.0.1:11434")).rstrip("/")
        binary = shutil.which("ollama")
        if binary is None:
            running = server_version(host)
            where = f"a server answers at {host} (version {running})" if running else \
                f"no Ollama server reachable at {host}"
            return Probe(False, reason=f"no `ollama` binary on PATH (needed for `ollama create`) and {where}; "
                                       f"{INSTALL_HINT}")
        version = server_version(host)
        if version is None and not self.settings.get("launch", True):
            return Probe(False, reason=f"no Ollama server reachable at {host} and engine.ollama.launch is false; "
                                       "start one with `ollama serve`")
        if version is None:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True)
            version = (out.stdout or out.stderr).strip().splitlines()[-1:] or ["unknown"]
            version = version[0]
        return Probe(True, version=f"ollama {version}", device="ollama (llama.cpp backend)",
                     capabilities={"force_length": False,
                                   "num_ctx": self.settings.get("num_ctx", 4096),
                                   "num_parallel": self.settings.get("num_parallel", 1),
                                   "keep_alive": self.settings.get("keep_alive", "5m")})

    def load(self, artifact: Artifact, transport: str) -> Session:
        if shutil.which("ollama") is None:
            raise RuntimeUnavailable(f"no `ollama` binary on PATH; {INSTALL_HINT}")
        return OllamaSession(artifact, self.settings)
