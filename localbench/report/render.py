"""report/report.md (+ report.html): the paper's tables and figures regenerated from this machine's data.

Nothing here is hand-typed result prose: tables 1-5 come from each runtime's declared and probed
capabilities, numbers from data/, and each of the paper's claims is checked against the measurements.
`report_from_outputs` reads the pipeline's outputs, `render` assembles the sections (one module each under
localbench/report/) and `write_report` writes Markdown and HTML.
"""
from __future__ import annotations

import json
from pathlib import Path

import markdown
import pandas as pd

from localbench.analysis import bundles as host_bundles
from localbench.analysis import claims, roofline
from localbench.core import environment
from localbench.core.markdown import table
from localbench.report import bundles, harness, longctx, quality, runtimes, tables


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
    quality_md = quality.section(pd.read_parquet(frontier) if frontier.exists() else None,
                                 {**quality_cfg, "source": provenance.get("source"),
                                  "figure": f"../{figure.as_posix()}" if figure.exists() else None})
    md = render(rows, artifacts, extras, manifest, sorted((plots / "figures").glob("*.*")), provenance,
                {**cfg, "drift_tolerance": workload["drift_tolerance"]},
                calib=pd.read_parquet(data / "calibration.parquet"), bandwidth=bandwidth, hosts=hosts,
                quality_md=quality_md)
    return write_report(md, out_dir, cfg["title"])


def render(rows: pd.DataFrame, artifacts: pd.DataFrame, extras: list[dict], manifest: dict, figures: list[Path],
           provenance: dict, cfg: dict, calib: pd.DataFrame | None = None, bandwidth: dict[str, float] | None = None,
           hosts: list | None = None, quality_md: str = "") -> str:
    """The report as Markdown, section by section."""
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
        "## Runtimes on this machine\n", table(runtimes.runtimes_table(extras)),
        "## Metric definitions\n", harness.definitions(),
        "## Decode throughput on matched cells (tok/s, median [95 % CI] (n))\n",
        "Columns are cells (workload, prompt tokens → output tokens, reuse); a blank is a cell that runtime did "
        "not measure: nothing is averaged across cells. The interval is distribution-free (order statistics) within "
        "one window and a bootstrap over the windows a cell's trials ran in otherwise; `[–]` where n cannot support "
        "a 95 % interval. A cell that stopped short of its stopping rule says why (time cap, max trials); rows of "
        "windows flagged for machine drift are left out.\n\n", table(tables.pivot(rows, "decode_tps", extras=extras)),
        "## TTFT on matched cells (s, median [95 % CI] (n))\n", table(tables.pivot(rows, "ttft_s", extras=extras)),
        "## Cold start\n", table(tables.cold_start(rows)),
        "## Peak memory\n", table(tables.memory(rows)),
        "## Decode roofline: memory bandwidth / weight bytes\n",
        "Decoding a token reads every weight once, so no runtime decodes faster than the memory bandwidth "
        "(measured here: the best of large matrix-vector products on all cores, decode's access pattern) divided "
        "by the artifact's size; the KV cache read is left out.\n\n",
        table(roofline.roofline_table(rows, artifacts, bandwidth or {})),
        bundles.section(hosts or []),   # several machines: this run and the result bundles of other hosts
        "## Figures\n", "".join(f"![{p.stem}](../{p.as_posix()})\n\n" for p in figures),
        "## Artifacts (conversion and quantization)\n", table(arts),
        "## Capabilities (declared and probed by each runtime module)\n", runtimes.capability_tables(extras),
        f"## llama.cpp fidelity: pipeline vs llama-bench in the same window (flag above "
        f"{cfg['fidelity_tolerance']:.0%})\n",
        table(tables.fidelity(rows, extras, cfg["fidelity_tolerance"], cfg["drift_tolerance"])),
        f"## Machine drift (probe readings per window; re-run once and flagged above {cfg['drift_tolerance']:.0%})\n",
        table(tables.drift_table(extras, cfg["drift_tolerance"])),
        "## Extra measurements\n", runtimes.extra_tables(extras),
        longctx.section(rows, extras, figures),
        quality_md,
        "## Claims of the paper, checked on this machine\n", table(claims.check_all(rows)),
        "## Harness self-calibration\n", harness.calibration_section(calib),
        "## Failed, unavailable, unsupported and flagged requests\n", table(tables.failures(rows)),
        "## All single-stream cells\n", table(tables.detail(rows, extras)),
        "## Environment\n", table(env),
    ]
    return "\n".join(parts)


def write_report(md: str, out_dir: Path, title: str) -> Path:
    """report.md and report.html (the Markdown converted) in out_dir; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / "report.md"
    md_path.write_text(md)
    html = markdown.markdown(md, extensions=["tables"])
    (out_dir / "report.html").write_text(f"<!doctype html><meta charset='utf-8'><title>{title}</title>"
                                         f"<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}"
                                         f"table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;"
                                         f"padding:2px 6px}}img{{max-width:100%}}</style>{html}")
    return md_path
