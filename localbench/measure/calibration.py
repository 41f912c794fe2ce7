"""Harness self-calibration: measure the reference server, whose schedule is known, and report our error.

For each protocol a reference server streams every request on a programmed schedule (TTFT, then one token
per ITL), measured through both client paths the pipeline uses: `single-stream` (a runtime session's
persistent client and the harness's run_request, as every single-stream server row is measured) and
`load generator` (at each concurrency level). The error is measured minus
programmed, for TTFT and for each inter-token gap, at p50 and p99. The server stamps its writes with the same
host-wide clock, so the error is also split into request delay (sent -> server parsed it), server lateness
(write - programmed time) and client delay (arrival - write).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from localbench.core.stats import quantile
from localbench.core.types import Request
from localbench.measure import loadgen
from localbench.measure.executor import run_request, stop_caller
from localbench.runtimes.reference import ReferenceSession
from localbench.transport.clients import Target
from localbench.transport.servers import Server

MS = 1e-6


def reference_server(ttft_ms: float, itl_ms: float, tokens: int, log_path: Path) -> Server:
    """A reference server process (not started) with the given schedule."""
    argv = [sys.executable, "-m", "localbench.transport.reference_server", "--port", "{port}", "--ttft-ms", str(ttft_ms),
            "--itl-ms", str(itl_ms), "--tokens", str(tokens)]
    return Server(argv, log_path, ready_path="/v1/models", ready_timeout_s=60)


def reference_stamps(usage_extra: dict, protocol: str) -> dict:
    """The reference server's own stamps (recv_ns, sent_ns, ttft_ns, itl_ns) from a request's usage report."""
    return usage_extra["usage" if protocol == "openai" else "ollama"]["reference"]


def server_late_ms(ref: dict) -> list[float]:
    """How late the reference server wrote each token against its own schedule (ms)."""
    sent = np.asarray(ref["sent_ns"], dtype=np.int64)
    programmed = ref["recv_ns"] + ref["ttft_ns"] + np.arange(len(sent)) * ref["itl_ns"]
    return ((sent - programmed) * MS).tolist()


def request_errors(rec: loadgen.Record, protocol: str, ttft_ms: float, itl_ms: float) -> dict[str, Any]:
    """Errors (ms) of one ok record against the programmed schedule, and their split by the server's stamps."""
    ref = reference_stamps(rec.usage.extra, protocol)
    arrivals = np.asarray(rec.arrivals_ns, dtype=np.int64)
    sent = np.asarray(ref["sent_ns"], dtype=np.int64)
    return {
        "ttft_err_ms": (arrivals[0] - rec.sent_ns) * MS - ttft_ms,
        "itl_err_ms": (np.diff(arrivals) * MS - itl_ms).tolist(),
        "request_delay_ms": (ref["recv_ns"] - rec.sent_ns) * MS,
        "server_late_ms": server_late_ms(ref),
        "client_delay_ms": ((arrivals - sent) * MS).tolist(),
    }


def single_stream_rows(cfg: dict, protocol: str, requests: list[Request], log_dir: Path) -> list[dict]:
    """Rows of requests sent one at a time through a reference runtime session and the harness's run_request."""

    ttft, itl = float(cfg["ttft_ms"]), float(cfg["itl_ms"])
    session = ReferenceSession({"ttft_ms": ttft, "itl_ms": itl, "tokens": int(cfg["tokens"]), "protocol": protocol,
                                "log_dir": str(log_dir)})
    rows = []
    try:
        for i in range(int(cfg["warmup"]) + int(cfg["single_stream_requests"])):
            fields = run_request(session, requests[i % len(requests)], timeout_s=60)
            if i < int(cfg["warmup"]):
                continue
            row = {"path": "single-stream", "protocol": protocol, "concurrency": 1, "index": i,
                   "status": fields["status"], "error": fields["error"]}
            if fields["status"] == "ok":
                row.update(ttft_err_ms=fields["ttft_s"] * 1e3 - ttft,
                           itl_err_ms=[g * 1e3 - itl for g in fields["itl_s"]],
                           server_late_ms=server_late_ms(reference_stamps(json.loads(fields["extra"]), protocol)))
            rows.append(row)
    finally:
        stop_caller(session)
        session.close()
    return rows


def measure(cfg: dict, log_dir: Path) -> pd.DataFrame:
    """One row per measured request: path, protocol, concurrency, status, and its errors (ms)."""
    ttft, itl, tokens = float(cfg["ttft_ms"]), float(cfg["itl_ms"]), int(cfg["tokens"])
    requests = [Request(f"cal{i}", tuple(range(1, 17)), "calibration prompt", tokens) for i in range(8)]
    rows = [row for protocol in cfg["protocols"] for row in single_stream_rows(cfg, protocol, requests, log_dir)]
    with reference_server(ttft, itl, tokens, log_dir / "reference_server.log") as server:
        for protocol in cfg["protocols"]:
            target = Target(server.base_url, "reference", protocol=protocol, chat=False, timeout_s=60)
            for n in cfg["concurrency"]:
                result = loadgen.run_loop(loadgen.closed_loop(
                    target, requests, int(n), num_requests=max(int(cfg["requests_per_level"]), int(n)),
                    warmup=int(cfg.get("warmup", n))))
                for rec in result.records:
                    row = {"path": "load generator", "protocol": protocol, "concurrency": int(n),
                           "index": rec.index, "status": rec.status, "error": rec.error}
                    if rec.status == "ok":
                        row.update(request_errors(rec, protocol, ttft, itl))
                    rows.append(row)
    return pd.DataFrame(rows)


def error_table(df: pd.DataFrame) -> pd.DataFrame:
    """p50/p99 of each error (ms) per path, protocol and concurrency (a p99 needs 100 values: localbench.core.stats);
    ITL and the splits pool every gap
    (the single-stream path has the server's lateness only: run_request keeps no raw stamps to split the rest)."""
    out = []
    for (path, protocol, n), g in df.groupby(["path", "protocol", "concurrency"], sort=False):
        ok = g[g.status == "ok"]
        row: dict[str, Any] = {"path": path, "protocol": protocol, "concurrency": int(n), "requests": len(g),
                               "errors": int((g.status != "ok").sum())}
        for col in ("ttft_err_ms", "itl_err_ms", "request_delay_ms", "server_late_ms", "client_delay_ms"):
            present = [v for v in ok[col] if v is not None and np.size(v) and not
                       (np.isscalar(v) and v != v)] if col in ok else []
            values = np.concatenate([np.atleast_1d(np.asarray(v, dtype=float)) for v in present]) \
                if present else np.array([])
            for q in (50, 99):
                row[f"{col[:-3]}_p{q}_ms"] = quantile(values, q)        # NaN where n cannot support it
        out.append(row)
    return pd.DataFrame(out)


def metrics_json(summary: pd.DataFrame) -> dict:
    """The harness's own error for `dvc exp show`: {path: {protocol: {c<N>: {ttft/itl p50/p99 (ms)}}}}."""
    out: dict = {}
    keep = ("ttft_err_p50_ms", "ttft_err_p99_ms", "itl_err_p50_ms", "itl_err_p99_ms")
    for row in summary.to_dict("records"):
        level = {k: round(row[k], 3) for k in keep if row[k] == row[k]}
        out.setdefault(row["path"].replace(" ", "_"), {}).setdefault(row["protocol"], {})[f"c{row['concurrency']}"] = level
    return out


def headline_errors(errors: dict) -> dict:
    """For `dvc exp show`: p50 TTFT/ITL errors at the lowest and highest concurrency only (the rest, p99
    included, stays in data/calibration.parquet and the report)."""
    out: dict = {}
    for path, protocols in errors.items():
        for protocol, levels in protocols.items():
            ends = sorted(levels, key=lambda c: int(c[1:]))
            out.setdefault(path, {})[protocol] = {
                c: {k: v for k, v in levels[c].items() if k.endswith("p50_ms")} for c in dict.fromkeys([ends[0], ends[-1]])}
    return out
