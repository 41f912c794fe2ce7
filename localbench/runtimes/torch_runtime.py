"""PyTorch (transformers) runtime on cuda, mps or cpu: the model's forward with its KV cache, greedy, streamed.

Each step is one forward over the last token with transformers' DynamicCache, yielded as soon as it is
sampled, so the harness times tokens as they exist. `generate()` with a streamer thread was measured
2.2x slower on an H100 (13 vs 28-30 tok/s, 3B bf16): its per-token thread hand-off, not the model, set
the pace. Length is forced: EOS is never checked, exactly max_tokens tokens are produced.
"""
from __future__ import annotations

from typing import Iterator

from localbench.config.engines import TorchEngine
from localbench.core.hardware import hf_dtype, torch_device
from localbench.core.types import Artifact, Chunk, Probe, Request, RuntimeUnavailable, Usage
from localbench.runtimes.base import Runtime, Session, register


def cache_bytes(cache) -> int:
    """Bytes of the DynamicCache's key and value tensors (the KV cache this request built)."""
    total = 0
    for layer in getattr(cache, "layers", None) or []:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None and hasattr(t, "nbytes"):
                total += int(t.nbytes)
    return total


class TorchSession(Session):
    def __init__(self, model, tokenizer, device: str, rope: dict | None = None):
        self.model, self.tokenizer, self.device, self.rope = model, tokenizer, device, rope or {}

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        import torch
        from transformers import DynamicCache

        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        generated = 0
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            ids = torch.tensor([list(request.prompt_ids)], device=self.device)
            # logits of the last position only: all of them would be prompt x vocab floats (20 GB at 32k fp32)
            logits = self.model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
            while generated < request.max_tokens:
                token = logits.argmax(-1, keepdim=True)
                token_id = int(token)                  # waits for the device: the token exists now
                generated += 1
                yield Chunk(tokens=1, text=self.tokenizer.decode([token_id]))
                if generated < request.max_tokens:
                    logits = self.model(token, past_key_values=cache, use_cache=True).logits[:, -1]
        yield Usage(prompt_tokens=len(request.prompt_ids), output_tokens=generated,
                    extra={"kv_cache_tokens": cache.get_seq_length(), "kv_cache_bytes": cache_bytes(cache),
                           "cached_tokens": 0, **({"rope_scaling": self.rope} if self.rope else {})})

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
    settings: TorchEngine
    declared = {"quantization": "bf16/fp16/fp32 weights; weight-only int8/int4 through torchao",
                "kv_cache": "per-request DynamicCache (grows with the context, no paging); no cross-request "
                            "reuse (measured as none); YaRN via rope_scaling in the config",
                "streaming": "Python loop over forward + KV cache (no server)",
                "api": "none (library); serving needs a custom HTTP layer",
                "deployment": "pip wheels (torch + transformers); cuda, mps or cpu"}

    def probe(self) -> Probe:
        try:
            import torch
            import transformers
        except ImportError as exc:
            return Probe(False, f"{exc.name} is not installed: pip install -r requirements.lock")
        try:
            device = torch_device(self.settings.device)
        except RuntimeUnavailable as exc:
            return Probe(False, str(exc))
        return Probe(True, version=f"torch {torch.__version__} / transformers {transformers.__version__}",
                     device=device, memory=device,
                     capabilities={"batching": "static batches only"})

    def load(self, artifact: Artifact, transport: str) -> Session:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if transport != "inprocess":
            raise RuntimeUnavailable(f"torch has no {transport} transport")
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        device = torch_device(self.settings.device)
        try:
            dtype = hf_dtype(artifact.quant, artifact.path)
        except ValueError as exc:
            raise RuntimeUnavailable(str(exc)) from None
        tokenizer = AutoTokenizer.from_pretrained(artifact.tokenizer_path or artifact.path)
        kwargs, rope = {}, self.settings.rope_scaling
        if rope:       # e.g. YaRN past the trained context: {rope_type: yarn, factor: 4, original_max_...: 32768}
            from transformers import AutoConfig
            config = AutoConfig.from_pretrained(artifact.path)
            if isinstance(getattr(config, "rope_parameters", None), dict):
                config.rope_parameters = {**config.rope_parameters, **rope}
            else:
                config.rope_scaling = dict(rope)
            if rope.get("factor") and rope.get("original_max_position_embeddings"):
                config.max_position_embeddings = int(rope["factor"] * rope["original_max_position_embeddings"])
            kwargs["config"] = config
        model = AutoModelForCausalLM.from_pretrained(artifact.path, dtype=getattr(torch, dtype), **kwargs).to(device)
        model.eval()
        return TorchSession(model, tokenizer, device, dict(rope or {}))
