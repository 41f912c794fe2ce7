"""The typed settings of each runtime (engine.<runtime> in params.yaml, conf/engine/<runtime>.yaml).

One model per runtime, named once in localbench.config.registry; a runtime receives an instance of its model as
`self.settings`. Every field has its default here (so `LlamacppEngine()` works); conf/engine/*.yaml still gives
every value a profile runs with. `transports` defaults to every transport the runtime offers: the registry reads
the offered transports from that default (RuntimeEntry.transports), the runtime classes from the registry.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Transport = Literal["inprocess", "server", "openai", "inprocess-rotating"]
Device = Literal["auto", "cuda", "mps", "cpu", "metal", "vulkan"]
WorkloadType = Literal["unique", "prefix", "code", "chat"]


class Closed(BaseModel):
    """A conf group (or part of one) whose keys are exactly these."""
    model_config = ConfigDict(extra="forbid")


def offers(*transports: Transport) -> Any:
    """The `transports` field of a runtime that offers these (its default: all of them)."""
    return Field(default=list(transports), min_length=1)


class WorkloadNarrowing(Closed):
    """engine.<runtime>.workload: a subset of the workload for one runtime."""
    types: Optional[list[WorkloadType]] = None
    lengths: Optional[list[int]] = None
    min_trials: Optional[int] = Field(default=None, gt=0)
    max_trials: Optional[int] = Field(default=None, gt=0)
    cell_time_cap_s: Optional[float] = Field(default=None, gt=0)
    rounds: Optional[int] = Field(default=None, gt=0)
    warmup: Optional[int] = Field(default=None, ge=0)
    max_tokens: Optional[int] = Field(default=None, gt=0)
    timeout_s: Optional[float] = Field(default=None, gt=0)
    max_prompt_tokens: Optional[int] = Field(default=None, gt=0)
    window_warmup_max_tokens: Optional[int] = Field(default=None, ge=0)
    warmup_max_tokens: Optional[int] = Field(default=None, gt=0)   # the session warm-up's output tokens


class LoadNarrowing(Closed):
    """engine.<runtime>.load: a lighter load sweep for one runtime."""
    enabled: Optional[bool] = None
    quants: Optional[list[str]] = None
    concurrency: Optional[list[int]] = None
    closed_requests: Optional[int] = Field(default=None, gt=0)
    rates: Optional[list[float]] = None
    open_requests: Optional[int] = Field(default=None, gt=0)
    duration_s: Optional[float] = Field(default=None, gt=0)
    warmup: Optional[int] = Field(default=None, ge=0)
    max_tokens: Optional[int] = Field(default=None, gt=0)


class Engine(Closed):
    """What every runtime's settings hold (a runtime outside the registry, e.g. a test's, gets this)."""
    quants: list[str] = []                               # measure only these of the converted quants ([]: all)
    transports: list[Transport] = offers("inprocess")
    transport_quants: dict[Transport, list[str]] = {}    # a transport measured on these quants only
    workload: Optional[WorkloadNarrowing] = None
    load: Optional[LoadNarrowing] = None
    log_dir: str = "logs"                                # the measure stage sets data/raw/<runtime>/logs

    def workload_over(self, workload: dict) -> dict:
        """`workload` (params.yaml's) with the keys engine.<runtime>.workload gives replaced."""
        return {**workload, **(self.workload.model_dump(exclude_unset=True) if self.workload else {})}

    def load_over(self, load: dict) -> dict:
        """`load` (params.yaml's) with the keys engine.<runtime>.load gives replaced."""
        return {**load, **(self.load.model_dump(exclude_unset=True) if self.load else {})}


class TorchEngine(Engine):
    transports: list[Transport] = offers("inprocess")
    device: Device = "auto"
    threads: int = Field(default=0, ge=0)                # torch.set_num_threads; 0 keeps torch's default
    rope_scaling: Optional[dict[str, Any]] = None     # e.g. {rope_type: yarn, factor: 4, original_max_position_embeddings: 32768}


class LlamacppEngine(Engine):
    transports: list[Transport] = offers("inprocess", "server")
    n_threads: int = Field(default=0, ge=0)              # 0 = all logical cores
    n_ctx: int = Field(default=4096, gt=0)
    n_batch: int = Field(default=2048, gt=0)
    n_ubatch: int = Field(default=512, gt=0)
    flash_attn: bool = True
    n_gpu_layers: int = Field(default=99, ge=0)
    parallel: int = Field(default=4, gt=0)
    server_ready_timeout_s: float = Field(default=300.0, gt=0)
    request_timeout_s: float = Field(default=600.0, gt=0)
    bench_repetitions: int = Field(default=3, ge=0)
    bench_timeout_s: float = Field(default=600.0, gt=0)
    bench_max_prompt_tokens: Optional[int] = Field(default=None, ge=0)
    rope_scaling: Optional[Literal["none", "linear", "yarn"]] = None
    rope_scale: Optional[float] = Field(default=None, gt=0)
    yarn_orig_ctx: Optional[int] = Field(default=None, gt=0)
    log_dir: str = "data/raw/llamacpp"


class MlxEngine(Engine):
    transports: list[Transport] = offers("inprocess", "server", "inprocess-rotating")
    group_size: int = Field(default=64, gt=0)
    max_kv_size: Optional[int] = Field(default=None, gt=0)
    rotating_kv_size: int = Field(default=4096, gt=0)    # the window of the `inprocess-rotating` transport
    prefill_step_size: int = Field(default=2048, gt=0)
    rope_scaling: Optional[dict[str, Any]] = None     # as engine.torch's, e.g. YaRN x4 past the trained context
    decode_concurrency: int = Field(default=32, gt=0)
    prompt_concurrency: int = Field(default=8, gt=0)
    server_prompt_cache_size: int = Field(default=0, ge=0)
    server_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    server_args: list[str] = []
    ready_timeout_s: float = Field(default=300.0, gt=0)
    request_timeout_s: float = Field(default=600.0, gt=0)
    log_dir: str = "data/raw/mlx"
    hf_hub_cache: Optional[str] = None                   # None: <log_dir>/hf_hub_cache
    prompt_cache_dir: Optional[str] = None
    prompt_cache_quants: list[str] = []
    prompt_cache_keep: bool = False
    prompt_cache_prefix_tokens: int = Field(default=256, gt=0)
    prompt_cache_suffix_tokens: int = Field(default=32, gt=0)
    prompt_cache_trials: int = Field(default=2, gt=0)
    prompt_cache_max_tokens: int = Field(default=8, gt=0)


class OllamaEngine(Engine):
    transports: list[Transport] = offers("server", "openai")
    binary: str = ""
    launch: bool = True
    host: str = "http://127.0.0.1:11434"
    models_dir: str = ".cache/ollama/models"
    keep_models: bool = False
    keep_alive: str = "30m"
    num_ctx: int = Field(default=4096, gt=0)
    num_parallel: int = Field(default=4, gt=0)
    num_thread: int = Field(default=0, ge=0)             # 0 = all logical cores
    num_batch: int = Field(default=512, gt=0)
    flash_attention: bool = True
    debug: bool = True
    request_timeout_s: float = Field(default=600.0, gt=0)
    ready_timeout_s: float = Field(default=120.0, gt=0)
    log_dir: str = "data/raw/ollama/logs"


class MlcEngine(Engine):
    transports: list[Transport] = offers("inprocess", "server")
    device: Device = "auto"
    mode: Literal["local", "interactive", "server"] = "local"
    request_timeout_s: float = Field(default=600.0, gt=0)
    ready_timeout_s: float = Field(default=300.0, gt=0)
    log_dir: str = "logs/mlc"


class EndpointEngine(Engine):
    transports: list[Transport] = offers("server")
    base_url: str = ""
    model: str = ""                                      # "" = the first model /v1/models lists
    extra_body: Optional[dict[str, Any]] = None
    request_timeout_s: float = Field(default=600.0, gt=0)


class ReferenceEngine(Engine):
    transports: list[Transport] = offers("server")
    protocol: Literal["openai", "ollama"] = "openai"
    ttft_ms: float = Field(default=20.0, ge=0)
    itl_ms: float = Field(default=5.0, ge=0)
    tokens: int = Field(default=64, gt=0)
    request_timeout_s: float = Field(default=60.0, gt=0)
    log_dir: str = "logs/reference"
