"""The page's interactive figures: Vega-Lite specs (the grammar DVC's plots use) with their data, every host's.

Each chart is a spec reading one named dataset ("rows") and the records for it; every record carries the page's
filter keys (host, runtime, transport, quant, workload) where they apply, and every point its median, 95 %
interval (lo, hi; null where n cannot support one, localbench.core.stats) and n for the tooltip. Charts named like a
PNG of plots/ (its stem) take that PNG's place on the page; the others go to the page's figure section.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from localbench.analysis.bundles import Bundle, host_cells
from localbench.analysis.cells import cold_unique, reference_rows, single_stream, undrifted
from localbench.report.figures import intervals, itl_cdf, labelled

KEYS = ["host", "runtime", "transport", "quant", "workload"]    # what the page's filters choose
CI_TOOLTIP = [{"field": "median", "format": ".4g"}, {"field": "lo", "title": "95 % CI lo", "format": ".4g"},
              {"field": "hi", "title": "95 % CI hi", "format": ".4g"}, {"field": "n"}]


@dataclass(frozen=True)
class Chart:
    """One interactive figure: its name (a PNG stem where it replaces one), title, spec and data records."""
    name: str
    title: str
    spec: dict
    data: list[dict]


def records(frame: pd.DataFrame) -> list[dict]:
    """JSON-safe records: NaN and NA as null, numpy scalars as Python ones."""
    out = []
    for rec in frame.to_dict("records"):
        out.append({k: (None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else
                        v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()})
    return out


def all_rows(hosts: list[Bundle]) -> pd.DataFrame:
    """Every host's request rows, each with its host and who served it (cell: runtime/transport/quant); rows of
    drift-flagged windows left out, as in every verdict."""
    frames = [undrifted(b.requests).assign(host=b.host) for b in hosts if len(b.requests)]
    return labelled(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()


def split_who(frame: pd.DataFrame) -> pd.DataFrame:
    """runtime, transport and quant columns from `cell` (runtime/transport/quant) where a frame lacks them."""
    parts = frame["cell"].str.split("/", n=2, expand=True).reindex(columns=range(3))
    return frame.assign(runtime=parts[0], transport=parts[1], quant=parts[2])


def with_ci(x: dict, y: str, title: str, log_x: bool = False, log_y: bool = False, series: str = "series",
            extra: list[dict] = ()) -> dict:
    """Median points joined by lines per series, with 95 % interval bars, on `x` (an encoding)."""
    tooltip = [{"field": "host"}, {"field": "cell", "title": "runtime/transport/quant"}, {"field": "workload"},
               {"field": x["field"], "title": x.get("title")}, *extra, *CI_TOOLTIP]
    y_scale = {"type": "log"} if log_y else {"zero": False}
    return {
        "title": title, "data": {"name": "rows"}, "width": 560, "height": 300,
        "encoding": {"x": {**x, **({"scale": {"type": "log"}} if log_x else {})},
                     "color": {"field": "cell", "type": "nominal", "title": "runtime/transport/quant"}},
        "layer": [
            {"mark": {"type": "line", "point": {"size": 50}},
             "encoding": {"y": {"field": "median", "type": "quantitative", "title": y, "scale": y_scale},
                          "detail": {"field": series}, "shape": {"field": "host", "type": "nominal"},
                          "tooltip": tooltip}},
            {"mark": {"type": "errorbar", "ticks": True},
             "encoding": {"y": {"field": "lo", "type": "quantitative", "title": y}, "y2": {"field": "hi"},
                          "detail": {"field": series}, "tooltip": tooltip}},
        ]}


def length_chart(rows: pd.DataFrame, metric: str, name: str, title: str, y: str, unique: bool = False,
                  log_y: bool = False) -> Chart | None:
    """Median `metric` [95 % CI] against prompt length per host, runtime/transport/quant and workload (`unique`:
    cold unique prompts only, the long-context view)."""
    warm = cold_unique(rows) if unique else single_stream(rows)
    warm = warm[~warm["cache_reuse"].astype(bool) & (warm["workload"] != "chat")]
    if warm.empty:
        return None
    stats = intervals(warm, ["host", "cell", "runtime", "transport", "quant", "workload", "prompt_tokens"], metric)
    stats["series"] = stats["host"] + " " + stats["cell"] + " " + stats["workload"]
    x = {"field": "prompt_tokens", "type": "quantitative", "title": "prompt tokens (log)"}
    return Chart(name, title, with_ci(x, y, title, log_x=True, log_y=log_y), records(stats))


def itl_chart(rows: pd.DataFrame) -> Chart | None:
    """Inter-token latency distribution (empirical CDF, 50 quantiles a cell) at each host's reference cell."""
    parts = []
    for host, g in rows.groupby("host"):
        ref = reference_rows(g)
        if ref.empty:
            continue
        cell = ref.iloc[0]
        for who, one in itl_cdf(ref).groupby("cell"):
            at = np.linspace(0, len(one) - 1, min(len(one), 50)).astype(int)
            parts.append(one.iloc[at].assign(host=host, workload=cell["workload"],
                                             where=f"{cell['workload']} {cell['prompt_tokens']}→{cell['max_tokens']}",
                                             gaps=len(one)))
    if not parts:
        return None
    data = split_who(pd.concat(parts, ignore_index=True))
    title = "Inter-token latency distribution (each host's reference cell)"
    spec = {"title": title, "data": {"name": "rows"}, "width": 560, "height": 300,
            "mark": {"type": "line", "interpolate": "step-after", "point": False},
            "encoding": {"x": {"field": "itl_ms", "type": "quantitative", "scale": {"type": "log"},
                               "title": "inter-token latency (ms, log)"},
                         "y": {"field": "cdf", "type": "quantitative", "title": "share of gaps ≤ x"},
                         "color": {"field": "cell", "type": "nominal", "title": "runtime/transport/quant"},
                         "strokeDash": {"field": "host", "type": "nominal"},
                         "tooltip": [{"field": "host"}, {"field": "cell"}, {"field": "where", "title": "cell"},
                                     {"field": "itl_ms", "format": ".3g"}, {"field": "cdf", "format": ".2f"},
                                     {"field": "gaps", "title": "n (gaps)"}]}}
    return Chart("fig6_itl_cdf", title, spec, records(data))


def memory_chart(rows: pd.DataFrame) -> Chart | None:
    """Peak memory against prompt length (cold unique prompts): median [95 % CI] of the per-request peaks."""
    cold = cold_unique(rows).assign(peak_rss_mib=lambda f: f["peak_rss_bytes"] / 2**20)
    cold = cold[cold["peak_rss_mib"].notna()]
    if cold.empty:
        return None
    stats = intervals(cold, ["host", "cell", "runtime", "transport", "quant", "workload", "prompt_tokens"],
                      "peak_rss_mib")
    stats["series"] = stats["host"] + " " + stats["cell"]
    x = {"field": "prompt_tokens", "type": "quantitative", "title": "prompt tokens (log)"}
    title = "Peak memory against context (MiB; servers: process tree, in-process: above the pre-load baseline)"
    return Chart("longctx_memory_vs_context", title, with_ci(x, "peak RSS (MiB)", title, log_x=True), records(stats))


def ranged(stats: pd.DataFrame, name: str, title: str, x_title: str, offset: str | None = None) -> Chart:
    """Per host and runtime/transport/quant (and `offset`, e.g. reuse on/off, side by side): the median as a bar
    and its 95 % interval as a rule."""
    stats = stats.assign(row=stats["host"] + " " + stats["cell"]
                         + (" " + stats["workload"] if offset and "workload" in stats else ""))
    tooltip = [{"field": "host"}, {"field": "cell", "title": "runtime/transport/quant"}, {"field": "workload"},
               *([{"field": offset}] if offset else []), *CI_TOOLTIP]
    y = {"field": "row", "type": "nominal", "title": None, "axis": {"labelLimit": 420}}
    spec = {"title": title, "data": {"name": "rows"}, "width": 460,
            "encoding": {"y": y, **({"yOffset": {"field": offset}, "color": {"field": offset, "type": "nominal"}}
                                    if offset else {})},
            "layer": [{"mark": {"type": "bar", "opacity": 0.8},
                       "encoding": {"x": {"field": "median", "type": "quantitative", "title": x_title},
                                    "tooltip": tooltip}},
                      {"mark": {"type": "rule", "color": "black"},
                       "encoding": {"x": {"field": "lo", "type": "quantitative"}, "x2": {"field": "hi"},
                                    "tooltip": tooltip}}]}
    return Chart(name, title, spec, records(stats))


WHO_KEYS = ["host", "cell", "runtime", "transport", "quant", "workload"]


def reference_chart(rows: pd.DataFrame, metric: str, name: str, title: str, x_title: str) -> Chart | None:
    """Median `metric` [95 % CI] per runtime/transport/quant at each host's reference cell (the cold cell the most
    of them measured)."""
    data = rows.groupby("host", group_keys=False)[rows.columns].apply(reference_rows)
    data = data.assign(peak_rss_mib=data["peak_rss_bytes"] / 2**20)
    data = data[data[metric].notna()]
    return ranged(intervals(data, WHO_KEYS, metric), name, title, x_title) if len(data) else None


def cold_start_chart(rows: pd.DataFrame) -> Chart | None:
    """Load → ready per runtime/transport/quant (one per session load): median [95 % CI]."""
    cold = rows[(rows["phase"] == "cold") & rows["cold_start_s"].notna()]
    if cold.empty:
        return None
    return ranged(intervals(cold, WHO_KEYS, "cold_start_s"), "fig2_cold_start",
                  "Cold start: load → ready (s, median and 95 % CI)", "seconds")


def reuse_chart(rows: pd.DataFrame) -> Chart | None:
    """TTFT with each runtime's cache reuse on and off on the same prompt sets: median [95 % CI]."""
    warm = single_stream(rows)
    warm = warm[warm["workload"].isin(["prefix", "chat"])]
    if warm.empty or not warm["cache_reuse"].astype(bool).any():
        return None
    warm = warm.assign(reuse=np.where(warm["cache_reuse"].astype(bool), "reuse on", "reuse off"))
    return ranged(intervals(warm, WHO_KEYS + ["reuse"], "ttft_s"), "cache_reuse",
                  "Cache reuse: TTFT with reuse on and off (s, median and 95 % CI)", "TTFT (s)", offset="reuse")


def turn_chart(rows: pd.DataFrame) -> Chart | None:
    """TTFT per chat turn with reuse on and off: median [95 % CI] per turn."""
    chat = single_stream(rows)
    chat = chat[chat["workload"] == "chat"]
    if chat.empty:
        return None
    chat = chat.assign(turn=chat["prompt_id"].str.extract(r"-t(\d+)$")[0].astype(float) + 1,
                       reuse=np.where(chat["cache_reuse"].astype(bool), "reuse on", "reuse off"))
    stats = intervals(chat, WHO_KEYS + ["reuse", "turn"], "ttft_s")
    stats["series"] = stats["host"] + " " + stats["cell"] + " " + stats["reuse"]
    x = {"field": "turn", "type": "quantitative", "title": "chat turn (the context grows each turn)"}
    title = "TTFT per chat turn, reuse on and off (s, median and 95 % CI)"
    spec = with_ci(x, "TTFT (s)", title, extra=[{"field": "reuse"}])
    spec["layer"][0]["encoding"]["strokeDash"] = {"field": "reuse", "type": "nominal"}
    return Chart("longctx_ttft_per_turn", title, spec, records(stats))


def roofline_chart(hosts: list[Bundle]) -> Chart | None:
    """Median decode as a share of each host's memory-bandwidth ceiling (weights, and weights + KV), per cell."""
    frames = [host_cells(b) for b in hosts]
    cells = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(len(f) for f in frames) else None
    if cells is None or cells["of_ceiling"].isna().all():
        return None
    cells = cells.assign(cell=cells["runtime"] + "/" + cells["transport"] + "/" + cells["quant"].astype(str),
                         at=cells["workload"] + " " + cells["prompt_tokens"].astype(str) + "→"
                         + cells["max_tokens"].astype(str))
    data = cells.melt(id_vars=["host", "cell", "runtime", "transport", "quant", "workload", "at", "n",
                               "decode_tps_p50"], value_vars=["of_ceiling", "of_ceiling_kv"], var_name="ceiling",
                      value_name="share")
    data["ceiling"] = data["ceiling"].map({"of_ceiling": "weights", "of_ceiling_kv": "weights + KV read"})
    title = "Decode as a share of the memory-bandwidth ceiling (median decode / (bandwidth / bytes read a token))"
    spec = {"title": title, "data": {"name": "rows"}, "width": 460,
            "mark": {"type": "bar"},
            "encoding": {"y": {"field": "row", "type": "nominal", "title": None, "axis": {"labelLimit": 420}},
                         "yOffset": {"field": "ceiling"}, "color": {"field": "ceiling", "type": "nominal"},
                         "x": {"field": "share", "type": "quantitative", "axis": {"format": "%"},
                               "title": "share of the ceiling"},
                         "tooltip": [{"field": "host"}, {"field": "cell"}, {"field": "at", "title": "cell"},
                                     {"field": "ceiling"}, {"field": "share", "format": ".1%"},
                                     {"field": "decode_tps_p50", "title": "decode tok/s (median)", "format": ".4g"},
                                     {"field": "n"}]}}
    data["row"] = data["host"] + " " + data["cell"] + " " + data["at"]
    return Chart("roofline", title, spec, records(data.dropna(subset=["share"])))


def concurrency_chart(rows: pd.DataFrame) -> Chart | None:
    """TTFT under load against the number of concurrent clients: median [95 % CI] per level."""
    load = rows[(rows["status"] == "ok") & (rows["phase"] == "load") & rows["concurrency"].notna()]
    if load.empty:
        return None
    stats = intervals(load, ["host", "cell", "runtime", "transport", "quant", "workload", "concurrency"], "ttft_s")
    stats["series"] = stats["host"] + " " + stats["cell"]
    x = {"field": "concurrency", "type": "quantitative", "title": "concurrent clients (log)"}
    title = "TTFT under closed-loop concurrency (s, median and 95 % CI per level)"
    return Chart("fig7_concurrency", title, with_ci(x, "TTFT (s)", title, log_x=True), records(stats))


def quality_chart(frontier: pd.DataFrame | None) -> Chart | None:
    """Quantization quality (KL divergence [95 % CI]) against size and against decode speed, per artifact."""
    if frontier is None or frontier.empty:
        return None
    ok = frontier[(frontier["status"] == "ok") & frontier["kld_mean"].notna()]
    if ok.empty:
        return None
    data = ok.assign(cell=ok["runtime"] + "/" + ok["quant"].astype(str), median=ok["kld_mean"],
                     lo=ok.get("kld_lo"), hi=ok.get("kld_hi"), n=ok.get("tokens_scored"))
    keep = ["runtime", "quant", "format", "cell", "size_mib", "decode_tps", "median", "lo", "hi", "n", "pareto"]
    data = data[[c for c in keep if c in data]]
    tooltip = [{"field": "cell", "title": "runtime/quant"}, {"field": "size_mib", "format": ".4g"},
               {"field": "decode_tps", "title": "decode tok/s", "format": ".4g"},
               {"field": "median", "title": "KLD mean", "format": ".4g"},
               {"field": "lo", "title": "95 % CI lo", "format": ".4g"},
               {"field": "hi", "title": "95 % CI hi", "format": ".4g"}, {"field": "n", "title": "tokens scored"}]

    def panel(x: str, title: str) -> dict:
        return {"width": 300, "height": 260, "encoding": {
                    "x": {"field": x, "type": "quantitative", "title": title, "scale": {"zero": False}},
                    "color": {"field": "runtime", "type": "nominal"}},
                "layer": [{"mark": {"type": "point", "filled": True, "size": 70},
                           "encoding": {"y": {"field": "median", "type": "quantitative",
                                              "title": "KL divergence to the reference (mean)"},
                                        "tooltip": tooltip}},
                          {"mark": "rule", "encoding": {"y": {"field": "lo", "type": "quantitative"},
                                                        "y2": {"field": "hi"}, "tooltip": tooltip}}]}
    title = "Quantization quality against size and speed (KL divergence, mean and 95 % CI)"
    spec = {"title": title, "data": {"name": "rows"},
            "hconcat": [panel("size_mib", "size (MiB)"), panel("decode_tps", "decode tok/s")]}
    return Chart("frontier", title, spec, records(data))


def energy_chart(rows: pd.DataFrame) -> Chart | None:
    """Decode tokens per joule against prompt length, where an energy counter was read (none: no chart)."""
    if "decode_tok_per_j" not in rows or rows["decode_tok_per_j"].isna().all():
        return None
    return length_chart(rows[rows["decode_tok_per_j"].notna()], "decode_tok_per_j", "energy_tok_per_j",
                        "Decode tokens per joule against prompt length (median and 95 % CI; board energy, idle "
                        "included)", "decode tok/J")


def charts(hosts: list[Bundle], frontier: pd.DataFrame | None) -> list[Chart]:
    """Every chart the data support (a chart without data is left out)."""
    rows = all_rows(hosts)
    made = [quality_chart(frontier), roofline_chart(hosts)]
    if len(rows):
        made = [reference_chart(rows, "decode_tps", "fig1_throughput",
                             "Decode throughput at each host's reference cell (tok/s, median and 95 % CI)", "tok/s"),
                cold_start_chart(rows),
                reference_chart(rows, "peak_rss_mib", "fig3_peak_memory",
                             "Peak memory at each host's reference cell (MiB, median and 95 % CI of the per-request "
                             "peaks)", "MiB"),
                length_chart(rows, "ttft_s", "fig4_ttft_vs_length",
                              "TTFT against prompt length (s, median and 95 % CI)", "TTFT (s)"),
                length_chart(rows, "decode_tps", "fig5_throughput_vs_length",
                              "Decode throughput against prompt length (tok/s, median and 95 % CI)", "decode tok/s"),
                itl_chart(rows), concurrency_chart(rows),
                length_chart(rows, "ttft_s", "longctx_ttft_vs_context",
                              "TTFT against context, cold prefill (s, log; median and 95 % CI)", "TTFT (s)",
                              unique=True, log_y=True),
                length_chart(rows, "decode_tps", "longctx_decode_vs_context",
                              "Decode speed against context (tok/s; median and 95 % CI)", "decode tok/s",
                              unique=True),
                memory_chart(rows), turn_chart(rows), reuse_chart(rows), energy_chart(rows), *made]
    return [c for c in made if c is not None]
