"""PyTorch (transformers) runtime: `generate` on cuda, mps or cpu, streamed token by token.

generate() runs in a worker thread and hands each new token id to a queue; the harness times the
moment the session yields it. Length is forced with min_new_tokens = max_new_tokens.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

from localbench.runtimes.base import (Artifact, Chunk, Probe, Request, Runtime, RuntimeUnavailable, Session,
                                      Usage, register)

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_END = object()


def pick_device(wanted: str) -> str:
    """'auto' -> cuda, else mps, else cpu; an explicit device must be available."""
    import torch
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if wanted == "auto":
        return "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    if not available.get(wanted):
        raise RuntimeUnavailable(f"torch device {wanted!r} is not available here; set engine.torch.device=auto")
    return wanted


class QueueStreamer:
    """transformers streamer: the first put() is the prompt (skipped), later ones are new token ids."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.seen_prompt = False

    def put(self, value) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(_END)


class TorchSession(Session):
    def __init__(self, model, tokenizer, device: str):
        self.model, self.tokenizer, self.device = model, tokenizer, device

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        import torch

        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        input_ids = torch.tensor([list(request.prompt_ids)], device=self.device)
        streamer = QueueStreamer()
        result: dict = {}
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad

        def work():
            try:
                with torch.inference_mode():
                    result["out"] = self.model.generate(
                        input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer, do_sample=False,
                        max_new_tokens=request.max_tokens, min_new_tokens=request.max_tokens,
                        pad_token_id=pad)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
                result["error"] = exc
                streamer.end()

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while (item := streamer.queue.get()) is not _END:
                yield Chunk(tokens=len(item), text=self.tokenizer.decode(item))
        finally:
            worker.join()
        if "error" in result:
            raise result["error"]
        generated = result["out"].shape[1] - input_ids.shape[1]
        yield Usage(prompt_tokens=input_ids.shape[1], output_tokens=int(generated))

    def memory(self) -> dict[str, int]:
        import torch
        if self.device == "cuda":
            return {"device_mem_bytes": int(torch.cuda.max_memory_allocated())}
        if self.device == "mps":
            return {"device_mem_bytes": int(torch.mps.driver_allocated_memory())}
        return {}

    def close(self) -> None:
        import gc
        del self.model
        gc.collect()


@register
class TorchRuntime(Runtime):
    name = "torch"
    transports = ("inprocess",)
    formats = ("hf",)

    def probe(self) -> Probe:
        try:
            import torch
            import transformers
        except ImportError as exc:
            return Probe(False, f"{exc.name} is not installed: pip install -r requirements.lock")
        try:
            device = pick_device(self.settings.get("device", "auto"))
        except RuntimeUnavailable as exc:
            return Probe(False, str(exc))
        return Probe(True, version=f"torch {torch.__version__} / transformers {transformers.__version__}",
                     device=device,
                     capabilities={"quantization": "bf16/fp16/fp32 weights (int8/int4 need extra libraries)",
                                   "kv_cache": "per-request DynamicCache; no cross-request reuse",
                                   "streaming": "Python streamer in a generate() thread; no server",
                                   "api": "none (library); serving needs a custom HTTP layer",
                                   "batching": "static batches only"})

    def load(self, artifact: Artifact, transport: str) -> Session:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if transport != "inprocess":
            raise RuntimeUnavailable(f"torch has no {transport} transport")
        if self.settings.get("threads"):
            torch.set_num_threads(int(self.settings["threads"]))
        device = pick_device(self.settings.get("device", "auto"))
        dtype = DTYPES.get(artifact.quant)
        if dtype is None:
            raise RuntimeUnavailable(f"torch artifact quant {artifact.quant!r} is not one of {sorted(DTYPES)}")
        tokenizer = AutoTokenizer.from_pretrained(artifact.tokenizer_path or artifact.path)
        model = AutoModelForCausalLM.from_pretrained(artifact.path, dtype=getattr(torch, dtype)).to(device)
        model.eval()
        return TorchSession(model, tokenizer, device)
