"""report/report.md and report/index.html: the paper's tables and figures regenerated from this machine's data.

Nothing here is hand-typed result prose: tables 1-5 come from each runtime's declared and probed
capabilities, numbers from data/, and each of the paper's claims is checked against the measurements.
`report_from_outputs` reads the pipeline's outputs, `render` assembles the sections (one module each under
localbench/report/) and `write_report` writes both from those sections: Markdown, and the page (report.page).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from localbench.analysis import bundles as host_bundles
from localbench.analysis import claims, roofline
from localbench.core import environment
from localbench.core.hardware import kv_bytes_per_token
from localbench.report import bundles, charts, harness, longctx, page, quality, runtimes, summary, tables
from localbench.report.sections import Figure, Section, to_markdown


def report_from_outputs(cfg: dict, quality_cfg: dict, workload: dict, out_dir: Path, data: Path = Path("data"),
                        models: Path = Path("models"), plots: Path = Path("plots"),
                        results: Path = host_bundles.RESULTS) -> Path:
    """The report of this run's outputs (data/, models/source/, plots/) beside every result bundle under
    results/ from other hosts; returns the Markdown path."""
    extras = [json.loads(p.read_text()) for p in sorted((data / "raw").glob("*/extra.json"))]
    provenance_file = models / "source" / "provenance.json"
    provenance = json.loads(provenance_file.read_text()) if provenance_file.exists() else {}
    rows, artifacts = pd.read_parquet(data / "requests.parquet"), pd.read_parquet(data / "artifacts.parquet")
    bandwidth = json.loads((data / "roofline.json").read_text())["memory_bandwidth_gbps"]
    manifest = environment.manifest()
    config = models / "source" / "config.json"
    here = host_bundles.local_bundle(rows, artifacts, bandwidth, manifest, extras,
                                     model_config=json.loads(config.read_text()) if config.exists() else None)
    hosts = [here] + [b for b in host_bundles.load_bundles(results) if b.host != here.host]
    frontier = data / "quality_frontier.parquet"   # quantization quality beside size and speed
    figure = plots / "quality" / "frontier.png"
    frontier_frame = pd.read_parquet(frontier) if frontier.exists() else None
    quality_section = quality.section(frontier_frame, {**quality_cfg, "source": provenance.get("source"),
                                                       "figure_png": figure if figure.exists() else None})
    sections = render(rows, artifacts, extras, manifest, sorted((plots / "figures").glob("*.*")), provenance,
                      {**cfg, "drift_tolerance": workload["drift_tolerance"]},
                      calib=pd.read_parquet(data / "calibration.parquet"), bandwidth=bandwidth, hosts=hosts,
                      quality_section=quality_section, model_config=here.manifest.get("model_config"))
    return write_report(sections, charts.charts(hosts, frontier_frame), out_dir, cfg["title"])


def write_report(sections: list[Section], figures: list[charts.Chart], out_dir: Path, title: str) -> Path:
    """report.md and index.html (the page, with its interactive figures) in out_dir; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / "report.md"
    md_path.write_text(to_markdown(sections))
    (out_dir / "index.html").write_text(page.page(sections, figures, title))
    return md_path


def render(rows: pd.DataFrame, artifacts: pd.DataFrame, extras: list[dict], manifest: dict, figures: list[Path],
           provenance: dict, cfg: dict, calib: pd.DataFrame | None = None, bandwidth: dict[str, float] | None = None,
           hosts: list | None = None, quality_section: Section | None = None,
           model_config: dict | None = None) -> list[Section]:
    """The report, section by section (report.md and index.html are both written from these); `hosts`: this run's
    bundle first, then the other hosts' (localbench.analysis.bundles)."""
    arts = artifacts.assign(size_mib=artifacts["size_bytes"] / 2**20).reindex(
        columns=["model", "format", "quant", "size_mib", "bits_per_weight", "convert_s", "tool", "compared", "status",
                 "error"])
    env = pd.DataFrame([{"key": k, "value": json.dumps(v) if isinstance(v, dict) else v} for k, v in manifest.items()])
    synthetic = provenance.get("source") == "synthetic"
    longctx_section = longctx.section(rows, extras, figures)
    shown_elsewhere = {f.png for f in longctx_section.blocks if isinstance(f, Figure)}
    return [
        Section("top", cfg["title"], [
            f"Model: **{provenance.get('model', '?')}** (source `{provenance.get('source', '?')}`"
            + (", random weights with the real architecture: speed and memory are valid, text quality is not"
               if synthetic else "") + "). Every number below was measured on the machine described in "
            "*Environment*; a runtime that could not run here is listed as unavailable with the reason, never "
            "estimated.\n"], level=1),
        *([summary.section(hosts, hosts[0].host)] if hosts else []),   # hosts[0]: this run
        Section("runtimes", "Runtimes on this machine", [runtimes.runtimes_table(extras)]),
        Section("definitions", "Metric definitions", [harness.definitions()]),
        Section("decode", "Decode throughput on matched cells (tok/s, median [95 % CI] (n))", [
            "Columns are cells (workload, prompt tokens → output tokens, reuse); a blank is a cell that runtime did "
            "not measure: nothing is averaged across cells. The interval is distribution-free (order statistics) "
            "within one window and a bootstrap over the windows a cell's trials ran in otherwise; `[–]` where n "
            "cannot support a 95 % interval. A cell that stopped short of its stopping rule says why (time cap, max "
            "trials); rows of windows flagged for machine drift are left out.\n\n",
            tables.pivot(rows, "decode_tps", extras=extras)]),
        Section("ttft", "TTFT on matched cells (s, median [95 % CI] (n))", [tables.pivot(rows, "ttft_s", extras=extras)]),
        Section("cold-start", "Cold start", [tables.cold_start(rows)]),
        Section("memory", "Peak memory", [tables.memory(rows)]),
        Section("energy", "Energy per token (tokens per joule beside tokens per second)", [
            "Energy counters read at each request's send, first token and last token (NVML's total energy of the "
            "GPU the weights are on; RAPL's CPU packages where /sys/class/powercap exposes them): board or "
            "package energy, idle included; the idle power (model loaded, no request, read before each window) "
            "is beside it. J / prompt token is left blank where the prefill is shorter than 10 updates of the "
            "counter. No counter, no number: never estimated.\n\n", "\n".join(tables.energy_reasons(extras)) + "\n\n",
            tables.energy(rows, extras)]),
        Section("roofline", "Decode roofline: memory bandwidth / bytes read per token", [
            "Decoding a token reads every weight once and the KV cache held so far, so no runtime decodes faster "
            "than the memory bandwidth (measured here: the best of large matrix-vector products on all cores, "
            "decode's access pattern) divided by the artifact's size, or, counting the KV read at mid-answer (this "
            "model's f16 KV bytes per token x (prompt + output / 2)), by both: that second ceiling is shown where it "
            f"is more than {roofline.KV_SHOWN_ABOVE:.0%} lower.\n\n",
            roofline.roofline_table(rows, artifacts, bandwidth or {}, kv_bytes_per_token(model_config or {}))]),
        bundles.section(hosts or []),   # several machines: this run and the result bundles of other hosts
        Section("figures", "Figures", [Figure(p.stem, p) for p in figures if p not in shown_elsewhere]),
        Section("artifacts", "Artifacts (conversion and quantization)", [arts]),
        Section("capabilities", "Capabilities (declared and probed by each runtime module)",
                [runtimes.capability_tables(extras)]),
        Section("fidelity", f"llama.cpp fidelity: pipeline vs llama-bench in the same window (flag above "
                f"{cfg['fidelity_tolerance']:.0%})",
                [tables.fidelity(rows, extras, cfg["fidelity_tolerance"], cfg["drift_tolerance"])], collapsed=True),
        Section("drift", f"Machine drift (probe readings per window; re-run once and flagged above "
                f"{cfg['drift_tolerance']:.0%})", [tables.drift_table(extras, cfg["drift_tolerance"])],
                collapsed=True),
        Section("extra", "Extra measurements", [runtimes.extra_tables(extras)]),
        longctx_section,
        *([quality_section] if quality_section else []),
        Section("claims", "Claims of the paper, checked on this machine", [claims.check_all(rows)]),
        Section("calibration", "Harness self-calibration", [harness.calibration_section(calib)], collapsed=True),
        Section("failures", "Failed, unavailable, unsupported and flagged requests", [tables.failures(rows)]),
        Section("cells", "All single-stream cells", [tables.detail(rows, extras)]),
        Section("environment", "Environment", [env], collapsed=True),
    ]
