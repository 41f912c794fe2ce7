"""The report's "Several machines" section: hosts, matched cells side by side, each host's roofline and serving.

The data come from localbench.analysis.bundles; this module only lays them out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from localbench.analysis.bundles import Bundle, host_cells, hosts_table, matched_hosts, serving
from localbench.analysis.roofline import kv_matters, share
from localbench.core.markdown import table
from localbench.report.sections import Section

SHOWN = ["runtime", "transport", "quant", "workload", "prompt_tokens", "max_tokens", "cache_reuse"]   # of the key


def roofline_rows(bundle: Bundle) -> pd.DataFrame:
    """One host's single-stream decode beside its roofline, one row per cell, for the report (the weights + KV
    ceiling where it matters: roofline.kv_matters)."""
    s = host_cells(bundle)
    if s.empty:
        return s
    shown = kv_matters(s["ceiling_tps"], s["ceiling_kv_tps"])
    return pd.DataFrame({
        "runtime": s["runtime"], "transport": s["transport"], "quant": s["quant"], "prompt": s["prompt_tokens"],
        "n": s["n"], "decode tok/s p50": s["decode_tps_p50"], "TTFT p50 (s)": s["ttft_p50_s"],
        "decode tok/J p50": s["decode_tpj_p50"],
        "memory": s["memory"], "ceiling tok/s (weights)": s["ceiling_tps"],
        "% of ceiling": s["of_ceiling"].map(share),
        "ceiling tok/s (weights + KV)": s["ceiling_kv_tps"].where(shown),
        "% (weights + KV)": s["of_ceiling_kv"].where(shown).map(share)})


def section(bundles: list[Bundle]) -> Section:
    """The report's multi-host section."""
    s = Section("hosts", "Several machines: matched cells side by side")
    if not bundles:
        s.blocks.append("\n_No result bundles (results/<host>/) and no local rows._\n")
        return s
    out = ["Each machine's numbers come from its own result bundle (`results/<host>/`, see README) or, for "
            "this machine, from this run; its roofline is its own measured bandwidth over each artifact's bytes "
            "(and, beside it, over weights plus the KV cache read at mid-answer).\n", table(hosts_table(bundles))]
    m = matched_hosts(bundles)
    out += ["### Matched single-stream cells (identical model, runtime, transport, quant, workload, prompt and "
            "output length, cache reuse, concurrency 1)\n",
            table(m[SHOWN + [c for c in m.columns if " · " in c]]
                  .apply(lambda col: col.map(share) if col.name.endswith("% of roofline") else col))
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
    s.blocks += out
    return s
