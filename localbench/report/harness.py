"""The report's sections on how numbers were taken: the metric definitions (quoted from localbench.core.metrics,
where each is defined once), the timing boundaries, and the harness's own error against the reference server."""
from __future__ import annotations

import pandas as pd

from localbench.core import metrics
from localbench.core.markdown import table
from localbench.measure.calibration import error_table

BOUNDARIES = (
    "- **Boundaries**: timestamps are client-side `time.perf_counter_ns()` at the moment each chunk reaches the "
    "harness. TTFT starts, for a server, when the request body has been written to the socket (one persistent "
    "client per session, built at load; the load generator stamps the same moment); in-process, right before "
    "the runtime's generate call. Output token counts come from the runtime's usage report; a chunk carries "
    "the tokens the runtime says it does (llama-server `timings.predicted_n`, mlx-lm `generation_tokens`, "
    "in-process llama.cpp one per token taken from `Llama.generate`) and rows whose chunk total disagrees with "
    "the usage report are flagged.\n"
    "- **Memory**: a server's peak RSS is its whole process tree; an in-process session's is the measuring "
    "process's peak minus its RSS right before the load (the harness, Python and the runtime's imported "
    "libraries excluded); a server the pipeline did not start reports none.\n"
    "- **Matched cells**: runtimes are compared only on identical (workload, prompt tokens, output tokens, "
    "cache reuse, concurrency) cells; n is shown, std needs n ≥ 2, p50/p90/p99 need n ≥ 2/10/100 (else "
    "\"max of n\"). Cold cells start with a token no other prompt starts with; sessions warm up on a prompt "
    "outside the plan.\n"
    "- **Drift**: the machine's speed is probed (median of matrix-vector products, GB/s) before and after every "
    "window of requests (one per session and prompt length) and around llama-bench inside the window; the "
    "fidelity comparison pairs measurements of one window.\n")


def definitions() -> str:
    """The metric definitions, taken from the docstrings of localbench.core.metrics (defined once), and boundaries."""
    lines = [f"- **{name}**: {fn.__doc__.strip()}" for name, fn in metrics.METRICS.items()]
    return "\n".join(lines) + "\n" + BOUNDARIES


def calibration_section(calib: pd.DataFrame | None) -> str:
    """The harness's own timing error against the reference server (measured - programmed, ms)."""
    if calib is None or calib.empty:
        return "_(calibration not run)_\n"
    return ("Measured minus programmed time, in ms, against the reference server (`localbench.transport.reference_server`) "
            "streaming on a known schedule, through both client paths: `single-stream` (a runtime session's "
            "persistent client, as every single-stream server row is measured) and `load generator`; target: "
            "< 1 ms at p50 and < 3 ms at p99.\n\n"
            + table(error_table(calib)))
