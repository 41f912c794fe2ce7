"""report/report.md (+ report.html): the paper's tables and figures regenerated from this machine's data.

Nothing here is hand-typed result prose: tables 1-5 come from each runtime's declared and probed
capabilities, numbers from data/, and each of the paper's claims is checked against the measurements.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from localbench.analysis import claims, roofline
from localbench.core import metrics
from localbench.core.markdown import table
from localbench.measure.calibration import error_table
from localbench.report import bundles, longctx, tables
from localbench.runtimes import registry

CAPABILITY_TABLES = [
    ("Table 1: quantization and model formats", "quantization"),
    ("Table 2: KV / prompt cache and long context", "kv_cache"),
    ("Table 3: streaming", "streaming"),
    ("Table 4: OpenAI-style API", "api"),
    ("Table 5: deployment", "deployment"),
]


def runtimes_table(extras: list[dict]) -> pd.DataFrame:
    rows = []
    for e in extras:
        probe = e.get("probe") or {}
        state = "skipped" if "skipped" in e else ("available" if probe.get("available") else "unavailable")
        rows.append({"runtime": e["runtime"], "state": state, "version": probe.get("version", ""),
                     "device": probe.get("device", ""), "reason": e.get("skipped") or probe.get("reason", "")})
    return pd.DataFrame(rows)


def capability_tables(extras: list[dict]) -> str:
    """Tables 1-5 from each runtime module's declaration (`Runtime.declared`, shown even where the runtime is
    not installed) overridden by what its probe() found here; no prose of ours."""

    known, out = registry(), []
    for title, key in CAPABILITY_TABLES:
        rows = []
        for e in extras:
            declared = known[e["runtime"]].declared if e["runtime"] in known else {}
            probed = (e.get("probe") or {}).get("capabilities") or {}
            rows.append({"runtime": e["runtime"], key: probed.get(key, declared.get(key, "not declared"))})
        out.append(f"### {title}\n\n{table(pd.DataFrame(rows))}")
    return "\n".join(out)


def extra_tables(extras: list[dict]) -> str:
    """Each runtime's extra measurements (prompt cache ...), one table per kind."""
    out = []
    for e in extras:
        records = e.get("records") or []
        for kind in dict.fromkeys(r.get("kind", "extra") for r in records):
            frame = pd.DataFrame([{k: v for k, v in r.items() if k != "kind"} for r in records
                                  if r.get("kind", "extra") == kind])
            out.append(f"### {e['runtime']}: {kind}\n\n{table(frame)}")
        if e.get("records_error"):
            out.append(f"_{e['runtime']}: extra measurements failed: {e['records_error']}_\n")
    return "\n".join(out) if out else "_(none recorded)_\n"


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


def render(rows: pd.DataFrame, artifacts: pd.DataFrame, extras: list[dict], manifest: dict, figures: list[Path],
           provenance: dict, cfg: dict, out_dir: Path, calib: pd.DataFrame | None = None,
           bandwidth: dict[str, float] | None = None) -> Path:
    """Write report.md and report.html into out_dir; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    arts = artifacts.assign(size_mib=artifacts["size_bytes"] / 2**20)[
        ["model", "format", "quant", "size_mib", "bits_per_weight", "convert_s", "tool", "status", "error"]]
    env = pd.DataFrame([{"key": k, "value": json.dumps(v) if isinstance(v, dict) else v} for k, v in manifest.items()])
    synthetic = provenance.get("source") == "synthetic"
    parts = [
        f"# {cfg['title']}\n",
        f"Model: **{provenance.get('model', '?')}** (source `{provenance.get('source', '?')}`"
        + (", random weights with the real architecture: speed and memory are valid, text quality is not" if synthetic
           else "") + "). Every number below was measured on the machine described in *Environment*; a runtime "
        "that could not run here is listed as unavailable with the reason, never estimated.\n",
        "## Runtimes on this machine\n", table(runtimes_table(extras)),
        "## Metric definitions\n", definitions(),
        "## Decode throughput on matched cells (tok/s, mean ± std (n))\n",
        "Columns are cells (workload, prompt tokens → output tokens, reuse); a blank is a cell that runtime did "
        "not measure: nothing is averaged across cells.\n\n", table(tables.pivot(rows, "decode_tps")),
        "## TTFT on matched cells (s, mean ± std (n))\n", table(tables.pivot(rows, "ttft_s")),
        "## Cold start\n", table(tables.cold_start(rows)),
        "## Peak memory\n", table(tables.memory(rows)),
        "## Decode roofline: memory bandwidth / weight bytes\n",
        "Decoding a token reads every weight once, so no runtime decodes faster than the memory bandwidth "
        "(measured here: the best of large matrix-vector products on all cores, decode's access pattern) divided "
        "by the artifact's size; the KV cache read is left out.\n\n",
        table(roofline.roofline_table(rows, artifacts, bandwidth or {})),
        bundles.section(cfg.get("bundles") or []),   # several machines: stages/report.py passes result bundles
        "## Figures\n", "".join(f"![{p.stem}](../{p.as_posix()})\n\n" for p in figures),
        "## Artifacts (conversion and quantization)\n", table(arts),
        "## Capabilities (declared and probed by each runtime module)\n", capability_tables(extras),
        f"## llama.cpp fidelity: pipeline vs llama-bench in the same window (flag above "
        f"{cfg['fidelity_tolerance']:.0%})\n",
        table(tables.fidelity(rows, extras, cfg["fidelity_tolerance"], cfg["drift_tolerance"])),
        f"## Machine drift (probe readings per window; flag above {cfg['drift_tolerance']:.0%})\n",
        table(tables.drift_table(extras, cfg["drift_tolerance"])),
        "## Extra measurements\n", extra_tables(extras),
        longctx.section(rows, extras, figures),
        cfg.get("quality") or "",        # localbench.report.quality.section(): stages/report.py passes it
        "## Claims of the paper, checked on this machine\n", table(claims.check_all(rows)),
        "## Harness self-calibration\n", calibration_section(calib),
        "## Failed, unavailable, unsupported and flagged requests\n", table(tables.failures(rows)),
        "## All single-stream cells\n", table(tables.detail(rows)),
        "## Environment\n", table(env),
    ]
    md = "\n".join(parts)
    md_path = out_dir / "report.md"
    md_path.write_text(md)
    import markdown
    html = markdown.markdown(md, extensions=["tables"])
    (out_dir / "report.html").write_text(f"<!doctype html><meta charset='utf-8'><title>{cfg['title']}</title>"
                                         f"<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}"
                                         f"table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;"
                                         f"padding:2px 6px}}img{{max-width:100%}}</style>{html}")
    return md_path
