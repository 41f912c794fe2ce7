"""Several machines, one report: result bundles side by side on matched cells, each host with its own roofline.

A result bundle is one machine's results in a folder `results/<host>/` (the `host` column's value,
`localbench.core.environment.fingerprint`):

    requests.parquet     every request row (localbench.core.schema.REQUEST_SCHEMA, `host` column included)
    artifacts.parquet    the artifacts measured (size_bytes gives the weight bytes the roofline divides by)
    roofline.json        {"memory_bandwidth_gbps": {"cpu": ..., "cuda": ...}} (+ optional "check": a D2D copy)
    manifest.json        the environment manifest (+ "host", "commit", optional "model_config")
    calibration.parquet  optional: the harness's self-calibration rows
    extras.json          optional: each measure stage's extra.json (probes, llama-bench, load-sweep summaries)

`python -m localbench.analysis.bundles export [DEST]` writes this machine's bundle from data/ (default results/);
`export_found` writes one from whatever a run cut short has written (benchmarks/gpu/bundle.py, the lent GPU's);
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

import pandas as pd

from localbench.analysis.cells import HOST_CELL, single_stream, undrifted
from localbench.analysis.roofline import ceiling, kv_read
from localbench.core import environment
from localbench.core.hardware import kv_bytes_per_token, memory_of
from localbench.core.schema import REQUEST_SCHEMA

RESULTS = Path("results")


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


def checked_bandwidth(check: dict) -> dict[str, float]:
    """{"cuda": GB/s} from a copy check's largest probe (hardware.copy_check: the roofline probe's own
    read_bandwidth, at the GPU profiles' 4 GiB) for a bundle whose part skipped calibration, which writes the
    roofline; {} without one."""
    probes = check.get("probe_cuda_gbps") or {}
    if not probes:
        return {}
    return {"cuda": float(probes[max(probes, key=lambda k: int(k.removesuffix("MiB")))])}


def load_bundle(folder: Path) -> Bundle:
    """A bundle folder; requests.parquet, artifacts.parquet and roofline.json are required."""
    folder = Path(folder)
    missing = [n for n in ("requests.parquet", "artifacts.parquet", "roofline.json") if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(f"result bundle {folder} lacks {missing}")
    requests = pd.read_parquet(folder / "requests.parquet")
    for name in REQUEST_SCHEMA.names:        # a bundle written before a column existed: the column, empty
        if name not in requests:
            requests[name] = None
    roof = _read_json(folder / "roofline.json", {})
    manifest = _read_json(folder / "manifest.json", {})
    hosts = requests["host"].dropna().unique().tolist()
    host = manifest.get("host") or (hosts[0] if len(hosts) == 1 else folder.name)
    calib = pd.read_parquet(folder / "calibration.parquet") if (folder / "calibration.parquet").exists() else None
    return Bundle(host=host, requests=requests, artifacts=pd.read_parquet(folder / "artifacts.parquet"),
                  bandwidth=roof.get("memory_bandwidth_gbps") or checked_bandwidth(roof.get("check", {})),
                  manifest=manifest, check=roof.get("check", {}),
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
    hosts = requests["host"].dropna().unique().tolist() if "host" in requests else []
    host = hosts[0] if len(hosts) == 1 else environment.fingerprint(manifest)
    return Bundle(host=host, requests=requests, artifacts=artifacts, bandwidth=dict(bandwidth or {}),
                  manifest={**manifest, **({"model_config": model_config} if model_config else {})},
                  extras=list(extras or []), calibration=calibration)


# ------------------------------------------------------------------------------------------------ roofline
def host_cells(bundle: Bundle) -> pd.DataFrame:
    """Warm single-stream cells of one host (rows of drift-flagged windows left out, as in every table): n, decode
    tok/s (mean, p50), TTFT p50, decode tok/J p50 (NaN without an energy counter), and each cell's
    memory-bandwidth ceiling: bandwidth / weight bytes, and / (weights + the KV cache read at mid-answer)."""
    warm = single_stream(undrifted(bundle.requests))
    if warm.empty:
        return pd.DataFrame()
    sizes = {(a.format, a.quant): a.size_bytes for a in bundle.artifacts.itertuples() if pd.notna(a.size_bytes)}
    kv = kv_bytes_per_token(bundle.manifest.get("model_config") or {})
    out = []
    for key, g in warm.groupby(HOST_CELL + ["device"], dropna=False):
        rec = dict(zip(HOST_CELL + ["device"], key))
        decode = g["decode_tps"].dropna()
        mem = memory_of(rec["device"], bundle.bandwidth)
        weights = sizes.get((rec["format"], rec["quant"]))
        bw = bundle.bandwidth.get(mem) if mem else None
        top = ceiling(bw, weights)
        top_kv = ceiling(bw, weights, kv_read(kv, rec["prompt_tokens"], rec["max_tokens"]))
        p50 = float(decode.median()) if len(decode) else math.nan
        tpj = float(g["decode_tok_per_j"].median()) if "decode_tok_per_j" in g else math.nan   # older bundles: none
        out.append({**rec, "host": bundle.host, "n": len(g), "decode_tps_mean": float(decode.mean()),
                    "decode_tps_p50": p50, "ttft_p50_s": float(g["ttft_s"].median()), "decode_tpj_p50": tpj,
                    "memory": mem,
                    "bandwidth_gbps": bw, "weight_bytes": weights, "ceiling_tps": top,
                    "ceiling_kv_tps": top_kv, "of_ceiling": p50 / top, "of_ceiling_kv": p50 / top_kv})
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
def matched_hosts(bundles: list[Bundle]) -> pd.DataFrame:
    """Single-stream cells measured by two or more hosts, one column group per host (decode p50, % of its
    own roofline, TTFT p50, decode tok/J p50 where that host read an energy counter, n); cells one host lacks are
    not shown, nothing is averaged across cells."""
    frames = [host_cells(b) for b in bundles]
    frames = [f for f in frames if not f.empty]
    if len(frames) < 2:
        return pd.DataFrame()
    cells = pd.concat(frames, ignore_index=True)
    hosts_per_cell = cells.groupby(HOST_CELL, dropna=False)["host"].transform("nunique")
    cells = cells[hosts_per_cell >= 2]
    if cells.empty:
        return pd.DataFrame()
    metrics = ["decode_tps_p50", "of_ceiling", "ttft_p50_s", "decode_tpj_p50", "n"]
    wide = (cells.drop_duplicates(HOST_CELL + ["host"]).set_index(HOST_CELL + ["host"])[metrics]
            .unstack("host").sort_index())          # only the cells that exist: no cross product of keys
    hosts = [b.host for b in bundles if b.host in set(cells["host"])]
    names = {"decode_tps_p50": "decode tok/s p50", "of_ceiling": "% of roofline", "ttft_p50_s": "TTFT p50 (s)",
             "decode_tpj_p50": "decode tok/J p50", "n": "n"}
    out = wide.index.to_frame(index=False)
    for host in hosts:
        for metric, name in names.items():
            column = wide[(metric, host)].to_numpy()
            if metric != "decode_tpj_p50" or not pd.isna(column).all():
                out[f"{host} · {name}"] = column
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


def _extras(data: Path) -> list[dict]:
    """Each measure stage's extra.json under data/raw/, with its folder's name."""
    return [json.loads(p.read_text()) | {"folder": p.parent.name} for p in sorted((data / "raw").glob("*/extra.json"))]


def export(dest: Path = RESULTS) -> Path:
    """The bundle of the pipeline's outputs (data/, models/source/config.json), with the environment manifest the
    measure stages recorded (another machine's after `dvc exp apply` of its experiment), else this machine's."""
    data = Path("data")
    requests = pd.read_parquet(data / "requests.parquet")
    roof = _read_json(data / "roofline.json", {})
    extras = _extras(data)
    calib = pd.read_parquet(data / "calibration.parquet") if (data / "calibration.parquet").exists() else None
    config = _read_json(Path("models/source/config.json"), None)
    measured_on = next((e["environment"] for e in extras if e.get("environment")), None) or environment.manifest()
    bundle = local_bundle(requests, pd.read_parquet(data / "artifacts.parquet"), roof.get("memory_bandwidth_gbps", {}),
                          measured_on, extras, calib, config)
    return write_bundle(bundle, dest)


FOUND = (("data/requests.parquet", "requests.parquet"), ("data/summary.parquet", "summary.parquet"),
         ("data/artifacts.parquet", "artifacts.parquet"), ("data/calibration.parquet", "calibration.parquet"),
         ("data/roofline.json", "roofline_probe.json"), ("metrics/summary.json", "metrics_summary.json"),
         ("report/report.md", "report.md"))


def export_found(dest: Path = RESULTS, check: dict | None = None, manifest: dict | None = None,
                 part: str = "all") -> Path:
    """This machine's bundle, dest/<fingerprint>/ (dest/<fingerprint>-<part>/ for one part of a GPU run, each
    lease its own machine, roofline and bundle; replaced whole), from whatever the pipeline has written so
    far (a run cut short: the files in FOUND copied as they are when present), with roofline.json (the probe's
    plus `check`, a copy bandwidth), extras.json, and manifest.json (the environment manifest, host,
    fingerprint, model_config, then `manifest`'s keys)."""
    m = environment.manifest()
    fingerprint = environment.fingerprint(m)
    host = fingerprint if part == "all" else f"{fingerprint}-{part}"
    out = Path(dest) / host
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for src, name in FOUND:
        if Path(src).exists():
            shutil.copy2(src, out / name)
    roof = _read_json(Path("data/roofline.json"), {})
    if check:
        roof["check"] = check
    (out / "roofline.json").write_text(json.dumps(roof, indent=1))
    (out / "extras.json").write_text(json.dumps(_extras(Path("data")), indent=1, default=str))
    m.update(host=host, fingerprint=fingerprint, model_config=_read_json(Path("models/source/config.json"), {}),
             **(manifest or {}))
    (out / "manifest.json").write_text(json.dumps(m, indent=1, default=str))
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "export":
        print(export(Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS))
    else:
        sys.exit("usage: python -m localbench.analysis.bundles export [DEST]   (writes DEST/<host>/ from data/)")
