"""Several machines, one report: result bundles side by side on matched cells, each host with its own roofline.

A result bundle is one machine's results in a folder `results/<host>/` (the `host` column's value,
`localbench.environment.fingerprint`):

    requests.parquet     every request row (localbench.schema.REQUEST_SCHEMA, `host` column included)
    artifacts.parquet    the artifacts measured (size_bytes gives the weight bytes the roofline divides by)
    roofline.json        {"memory_bandwidth_gbps": {"cpu": ..., "cuda": ...}} (+ optional "check": a D2D copy)
    manifest.json        the environment manifest (+ "host", "commit", optional "model_config")
    calibration.parquet  optional: the harness's self-calibration rows
    extras.json          optional: each measure stage's extra.json (probes, llama-bench, load-sweep summaries)

`python -m localbench.compare export [DEST]` writes this machine's bundle from data/ (default results/);
the report stage reads every bundle under results/ and shows, beside this machine's own data, the cells two
or more hosts measured identically (model, runtime, transport, format, quant, workload, prompt tokens,
max tokens, cache reuse, phase, concurrency): never an average over different populations.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path("results")
MATCH = ["model", "runtime", "transport", "format", "quant", "workload", "prompt_tokens", "max_tokens",
         "cache_reuse", "phase", "concurrency"]
SHOWN = ["runtime", "transport", "quant", "prompt_tokens", "max_tokens"]   # of MATCH, the ones that vary here


@dataclass
class Bundle:
    """One machine's results."""
    host: str
    requests: pd.DataFrame
    artifacts: pd.DataFrame
    bandwidth: dict[str, float]                       # GB/s per memory (cpu, cuda, mps)
    manifest: dict = field(default_factory=dict)
    check: dict = field(default_factory=dict)         # roofline.json "check": the copy bandwidth beside the probe
    extras: list[dict] = field(default_factory=list)
    calibration: pd.DataFrame | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        """What the machine is, for people: its accelerator (or CPU) and host id."""
        what = self.manifest.get("gpu") or self.manifest.get("cpu") or "?"
        return f"{what} ({self.host})"


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def load_bundle(folder: Path) -> Bundle:
    """A bundle folder; requests.parquet, artifacts.parquet and roofline.json are required."""
    folder = Path(folder)
    missing = [n for n in ("requests.parquet", "artifacts.parquet", "roofline.json") if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(f"result bundle {folder} lacks {missing}")
    requests = pd.read_parquet(folder / "requests.parquet")
    from localbench.schema import REQUEST_SCHEMA
    for name in REQUEST_SCHEMA.names:        # a bundle written before a column existed: the column, empty
        if name not in requests:
            requests[name] = None
    roof = _read_json(folder / "roofline.json", {})
    manifest = _read_json(folder / "manifest.json", {})
    hosts = requests["host"].dropna().unique().tolist()
    host = manifest.get("host") or (hosts[0] if len(hosts) == 1 else folder.name)
    calib = pd.read_parquet(folder / "calibration.parquet") if (folder / "calibration.parquet").exists() else None
    return Bundle(host=host, requests=requests, artifacts=pd.read_parquet(folder / "artifacts.parquet"),
                  bandwidth=roof.get("memory_bandwidth_gbps", {}), manifest=manifest, check=roof.get("check", {}),
                  extras=_read_json(folder / "extras.json", []), calibration=calib, path=folder)


def load_bundles(root: Path = RESULTS) -> list[Bundle]:
    """Every bundle under root (each folder holding a requests.parquet), sorted by host."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted((load_bundle(p.parent) for p in root.glob("*/requests.parquet")), key=lambda b: b.host)


def write_bundle(bundle: Bundle, root: Path = RESULTS) -> Path:
    """Write `bundle` as root/<host>/ (replaced whole)."""
    dest = Path(root) / bundle.host
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    bundle.requests.to_parquet(dest / "requests.parquet", index=False)
    bundle.artifacts.to_parquet(dest / "artifacts.parquet", index=False)
    roof = {"memory_bandwidth_gbps": bundle.bandwidth, **({"check": bundle.check} if bundle.check else {})}
    (dest / "roofline.json").write_text(json.dumps(roof, indent=1))
    (dest / "manifest.json").write_text(json.dumps({**bundle.manifest, "host": bundle.host}, indent=1, default=str))
    if bundle.extras:
        (dest / "extras.json").write_text(json.dumps(bundle.extras, indent=1, default=str))
    if bundle.calibration is not None:
        bundle.calibration.to_parquet(dest / "calibration.parquet", index=False)
    return dest


def local_bundle(requests: pd.DataFrame, artifacts: pd.DataFrame, bandwidth: dict[str, float], manifest: dict,
                 extras: list[dict] | None = None, calibration: pd.DataFrame | None = None,
                 model_config: dict | None = None) -> Bundle:
    """This machine's results (the report stage's inputs) as a bundle."""
    from localbench import environment

    hosts = requests["host"].dropna().unique().tolist() if "host" in requests else []
    host = hosts[0] if len(hosts) == 1 else environment.fingerprint(manifest)
    return Bundle(host=host, requests=requests, artifacts=artifacts, bandwidth=dict(bandwidth or {}),
                  manifest={**manifest, **({"model_config": model_config} if model_config else {})},
                  extras=list(extras or []), calibration=calibration)


# ------------------------------------------------------------------------------------------------ roofline
def memory_of(device: str, bandwidth: dict[str, float]) -> str | None:
    """Which of the host's measured memories a runtime's device string reads its weights from. A bare 'gpu'
    (llama.cpp's probe on CUDA and Metal builds alike) is the host's one accelerator memory."""
    d = str(device or "").lower()
    if "cuda" in d:
        return "cuda"
    if "mps" in d or "metal" in d:
        return "mps"
    if "gpu" in d:
        return next((m for m in ("cuda", "mps") if m in bandwidth), None)
    return "cpu" if d else None


def kv_bytes_per_token(model_config: dict, bytes_per_value: int = 2) -> float:
    """K and V of every layer for one token (f16/bf16 cache), from an HF config; NaN when unknown."""
    try:
        layers, kv_heads = int(model_config["num_hidden_layers"]), int(model_config["num_key_value_heads"])
        head_dim = int(model_config.get("head_dim") or model_config["hidden_size"] // model_config["num_attention_heads"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return math.nan
    return 2.0 * layers * kv_heads * head_dim * bytes_per_value


def single_stream(bundle: Bundle) -> pd.DataFrame:
    """Warm single-stream cells of one host: n, decode tok/s (mean, p50), TTFT p50, and each cell's
    memory-bandwidth ceiling: bandwidth / weight bytes, and / (weights + the KV cache read at mid-answer)."""
    r = bundle.requests
    # a sweep run's own single-stream requests ran under the sweep's server settings (more slots, a larger KV
    # pool: benchmarks/gpu_run.py's gpu-load pass): they are not the single-stream cell, leave them out
    sweep_runs = set(r.loc[r["phase"] == "load", "run_id"].dropna())
    warm = r[(r["status"] == "ok") & (r["phase"] == "warm") & (r["concurrency"].fillna(1) == 1)
             & ~r["run_id"].isin(sweep_runs)]
    if warm.empty:
        return pd.DataFrame()
    sizes = {(a.format, a.quant): a.size_bytes for a in bundle.artifacts.itertuples() if pd.notna(a.size_bytes)}
    kv = kv_bytes_per_token(bundle.manifest.get("model_config") or {})
    out = []
    for key, g in warm.groupby(MATCH + ["device"], dropna=False):
        rec = dict(zip(MATCH + ["device"], key))
        decode = g["decode_tps"].dropna()
        mem = memory_of(rec["device"], bundle.bandwidth)
        weights = sizes.get((rec["format"], rec["quant"]))
        bw = bundle.bandwidth.get(mem) if mem else None
        ceiling = bw * 1e9 / weights if bw and weights else math.nan
        context = rec["prompt_tokens"] + rec["max_tokens"] / 2
        ceiling_kv = bw * 1e9 / (weights + kv * context) if bw and weights and not math.isnan(kv) else math.nan
        p50 = float(decode.median()) if len(decode) else math.nan
        out.append({**rec, "host": bundle.host, "n": len(g), "decode_tps_mean": float(decode.mean()),
                    "decode_tps_p50": p50, "ttft_p50_s": float(g["ttft_s"].median()), "memory": mem,
                    "bandwidth_gbps": bw, "weight_bytes": weights, "ceiling_tps": ceiling,
                    "ceiling_kv_tps": ceiling_kv, "of_ceiling": p50 / ceiling if ceiling else math.nan,
                    "of_ceiling_kv": p50 / ceiling_kv if ceiling_kv else math.nan})
    return pd.DataFrame(out)


def serving(bundle: Bundle) -> pd.DataFrame:
    """The closed-loop load sweeps of one host (from its extras): output tok/s per concurrency level."""
    rows = [{"host": bundle.host, **{k: rec.get(k) for k in ("runtime", "transport", "quant", "concurrency",
                                                             "requests", "ok", "output_throughput",
                                                             "request_throughput", "ttft_p50_s", "tpot_p50_s")}}
            for e in bundle.extras for rec in (e.get("records") or [])
            if rec.get("kind") == "load sweep" and rec.get("mode") == "closed"]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- matching
def matched(bundles: list[Bundle]) -> pd.DataFrame:
    """Single-stream cells measured by two or more hosts, one column group per host (decode p50, % of its
    own roofline, TTFT p50, n); cells one host lacks are not shown, nothing is averaged across cells."""
    frames = [single_stream(b) for b in bundles]
    frames = [f for f in frames if not f.empty]
    if len(frames) < 2:
        return pd.DataFrame()
    cells = pd.concat(frames, ignore_index=True)
    hosts_per_cell = cells.groupby(MATCH, dropna=False)["host"].transform("nunique")
    cells = cells[hosts_per_cell >= 2]
    if cells.empty:
        return pd.DataFrame()
    metrics = ["decode_tps_p50", "of_ceiling", "ttft_p50_s", "n"]
    wide = (cells.drop_duplicates(MATCH + ["host"]).set_index(MATCH + ["host"])[metrics]
            .unstack("host").sort_index())          # only the cells that exist: no cross product of keys
    hosts = [b.host for b in bundles if b.host in set(cells["host"])]
    names = {"decode_tps_p50": "decode tok/s p50", "of_ceiling": "% of roofline", "ttft_p50_s": "TTFT p50 (s)",
             "n": "n"}
    out = wide.index.to_frame(index=False)
    for host in hosts:
        for metric, name in names.items():
            out[f"{host} · {name}"] = wide[(metric, host)].to_numpy()
    return out


def hosts_table(bundles: list[Bundle]) -> pd.DataFrame:
    """Which machine is which: hardware, measured bandwidth (probe and copy check), rows, commit."""
    rows = []
    for b in bundles:
        m = b.manifest
        copy = (b.check.get("copy") or {}).get("gbps_median")
        rows.append({"host": b.host, "accelerator": m.get("gpu") or "none", "cpu": m.get("cpu", ""),
                     "cores": m.get("cpu_cores_logical"), "memory (GiB)": (m.get("memory_bytes") or 0) / 2**30,
                     "roofline probe (GB/s)": ", ".join(f"{k} {v:,.0f}" for k, v in sorted(b.bandwidth.items())),
                     "D2D copy (GB/s)": copy, "requests": len(b.requests),
                     "ok": int((b.requests["status"] == "ok").sum()),
                     "runtimes": ", ".join(sorted(b.requests.loc[b.requests["status"] == "ok", "runtime"].unique())),
                     "commit": str(m.get("commit", ""))[:10], "source": str(b.path) if b.path else "this run"})
    return pd.DataFrame(rows)


def _pct(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.0%}" if v <= 1.0 else f"{v:.0%} (over 100 %: probe or accounting wrong)"


def roofline_rows(bundle: Bundle) -> pd.DataFrame:
    """One host's single-stream decode beside its roofline, one row per cell, for the report."""
    s = single_stream(bundle)
    if s.empty:
        return s
    return pd.DataFrame({
        "runtime": s["runtime"], "transport": s["transport"], "quant": s["quant"], "prompt": s["prompt_tokens"],
        "n": s["n"], "decode tok/s p50": s["decode_tps_p50"], "TTFT p50 (s)": s["ttft_p50_s"],
        "memory": s["memory"], "ceiling tok/s (weights)": s["ceiling_tps"],
        "% of ceiling": s["of_ceiling"].map(_pct),
        "ceiling tok/s (weights + KV)": s["ceiling_kv_tps"], "% (weights + KV)": s["of_ceiling_kv"].map(_pct)})


def section(bundles: list[Bundle]) -> str:
    """The report's multi-host section (Markdown)."""
    from localbench.report import table

    out = ["## Several machines: matched cells side by side\n"]
    if not bundles:
        return out[0] + "\n_No result bundles (results/<host>/) and no local rows._\n"
    out += ["Each machine's numbers come from its own result bundle (`results/<host>/`, see README) or, for "
            "this machine, from this run; its roofline is its own measured bandwidth over each artifact's bytes "
            "(and, beside it, over weights plus the KV cache read at mid-answer).\n", table(hosts_table(bundles))]
    m = matched(bundles)
    out += ["### Matched single-stream cells (identical model, runtime, transport, quant, workload, prompt and "
            "output length, cache reuse, concurrency 1)\n",
            table(m[SHOWN + [c for c in m.columns if " · " in c]]
                  .apply(lambda col: col.map(_pct) if col.name.endswith("% of roofline") else col))
            if not m.empty
            else "_No cell was measured on two or more hosts._\n"]
    for b in bundles:
        rows = roofline_rows(b)
        out += [f"### {b.label}: decode beside its roofline\n", table(rows)]
        sv = serving(b)
        if not sv.empty:
            out += [f"### {b.label}: closed-loop serving (output tok/s by concurrency)\n",
                    table(sv.pivot_table(index=["runtime", "transport", "quant"], columns="concurrency",
                                         values="output_throughput", aggfunc="first").reset_index()
                          .rename(columns=lambda c: f"c={c}" if isinstance(c, (int, np.integer)) else c))]
    return "\n".join(out)


def export(dest: Path = RESULTS) -> Path:
    """This machine's bundle from the pipeline's outputs (data/, models/source/config.json)."""
    from localbench import environment

    data = Path("data")
    requests = pd.read_parquet(data / "requests.parquet")
    roof = _read_json(data / "roofline.json", {})
    extras = [json.loads(p.read_text()) | {"folder": p.parent.name} for p in sorted((data / "raw").glob("*/extra.json"))]
    calib = pd.read_parquet(data / "calibration.parquet") if (data / "calibration.parquet").exists() else None
    config = _read_json(Path("models/source/config.json"), None)
    bundle = local_bundle(requests, pd.read_parquet(data / "artifacts.parquet"), roof.get("memory_bandwidth_gbps", {}),
                          environment.manifest(), extras, calib, config)
    return write_bundle(bundle, dest)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "export":
        print(export(Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS))
    else:
        sys.exit("usage: python -m localbench.compare export [DEST]   (writes DEST/<host>/ from data/)")
