"""The report's runtime sections: which runtimes ran here (probe), Tables 1-5 of the paper from each runtime
module's declaration overridden by what its probe found, and each runtime's extra measurements."""
from __future__ import annotations

import pandas as pd

from localbench.core.markdown import table
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
        state = ("skipped" if "skipped" in e else "cut short" if "cut_short" in e
                 else "available" if probe.get("available") else "unavailable")
        rows.append({"runtime": e["runtime"], "state": state, "version": probe.get("version", ""),
                     "device": probe.get("device", ""),
                     "reason": e.get("skipped") or e.get("cut_short") or probe.get("reason", "")})
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
