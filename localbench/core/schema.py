"""The per-request row (data/raw/<runtime>.parquet) and the artifact row (data/artifacts.parquet)."""
from __future__ import annotations

import pyarrow as pa

REQUEST_FIELDS: list[tuple[str, pa.DataType]] = [
    ("run_id", pa.string()),
    ("runtime", pa.string()),
    ("runtime_version", pa.string()),
    ("transport", pa.string()),          # inprocess | server
    ("device", pa.string()),
    ("weights_memory", pa.string()),     # the memory the weights are read from (cpu | cuda | mps): its roofline
    ("model", pa.string()),
    ("format", pa.string()),
    ("quant", pa.string()),
    ("workload", pa.string()),           # unique | prefix | code | chat | load
    ("prompt_id", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("max_tokens", pa.int64()),
    ("trial", pa.int64()),
    ("phase", pa.string()),              # cold (first request after load) | warm
    ("concurrency", pa.int64()),         # clients in flight (1 for single-stream)
    ("rate", pa.float64()),              # open-loop arrival rate (req/s), NaN for closed loop
    ("cache_reuse", pa.bool_()),
    ("ttft_s", pa.float64()),
    ("e2e_s", pa.float64()),
    ("decode_tps", pa.float64()),
    ("tpot_s", pa.float64()),
    ("e2e_tps", pa.float64()),
    ("prefill_tps", pa.float64()),
    ("itl_s", pa.list_(pa.float64())),
    ("tokens_in_chunk", pa.list_(pa.int64())),
    ("energy_j", pa.float64()),          # counter at last token - at send (localbench.measure.energy), idle included
    ("prefill_energy_j", pa.float64()),  # counter at first token - at send
    ("decode_j_per_token", pa.float64()),
    ("prefill_j_per_token", pa.float64()),
    ("decode_tok_per_j", pa.float64()),
    ("idle_power_w", pa.float64()),      # the window's idle power (model loaded, no request), read before it
    ("energy_meter", pa.string()),       # which counter (None: no counter here; extra.json "energy" says why)
    ("cold_start_s", pa.float64()),      # load time of the session that served this request
    ("peak_rss_bytes", pa.int64()),
    ("device_mem_bytes", pa.int64()),
    ("extra", pa.string()),              # JSON: whatever the runtime reports beside (buffers, durations)
    ("status", pa.string()),             # ok | short | error | timeout | oom | unavailable | unsupported | skipped
    ("error", pa.string()),
    ("flag", pa.string()),               # notes on an ok row: token counts that disagree, over-length output
    ("window", pa.string()),             # the measurement window (session, round) the row ran in
    ("probe_gbps", pa.float64()),        # the machine-speed probe at the window's start (localbench.measure.drift)
    ("window_drift", pa.float64()),      # how far the window's matmul probe moved: (max - min) / max
    ("drift_flag", pa.bool_()),          # the window moved beyond workload.drift_tolerance: outside every verdict
    ("rerun", pa.bool_()),               # measured in the re-run of a window that moved
    ("host", pa.string()),
    ("started_at", pa.string()),
]
REQUEST_SCHEMA = pa.schema(REQUEST_FIELDS)

ARTIFACT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model", pa.string()),
    ("format", pa.string()),
    ("quant", pa.string()),
    ("path", pa.string()),
    ("tokenizer_path", pa.string()),
    ("size_bytes", pa.int64()),
    ("bits_per_weight", pa.float64()),
    ("convert_s", pa.float64()),
    ("tool", pa.string()),
    ("compared", pa.string()),           # another maker's file of the same type, and how they differ (Ollama's quantizer)
    ("status", pa.string()),
    ("error", pa.string()),
]
ARTIFACT_SCHEMA = pa.schema(ARTIFACT_FIELDS)

STATUSES = ("ok", "short", "error", "timeout", "oom", "unavailable", "unsupported", "skipped")


def empty_row() -> dict:
    """A request row with every field present (None)."""
    return {name: None for name, _ in REQUEST_FIELDS}


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to an Arrow table of exactly `schema`; unknown keys are an error."""
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise KeyError(f"row has fields not in the schema: {sorted(extra)}")
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
