"""The paper's figures from the per-request rows: each a PNG/SVG in plots/figures and its data as CSV.

Figures: decode throughput per runtime (Fig. 1), cold start (Fig. 2), peak memory (Fig. 3), TTFT vs
prompt length, throughput vs prompt length, inter-token latency CDF. Points are medians and error bars their 95 %
intervals (localbench.core.stats.median_ci: over the windows a cell's trials ran in; none where n cannot support one).
One-number-per-runtime figures (1, 3, 6) show one matched cell (localbench.analysis.cells.reference_cell, named in
the title); the per-length figures show cold-cache cells, one line per runtime/transport/quant.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from localbench.analysis.cells import (WHO, cold_unique, in_cell, label, reference_cell, single_stream,  # noqa: E402
                                       undrifted)
from localbench.analysis.longctx import kv_columns, load_config
from localbench.core.stats import median_ci, quantile


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with a `cell` column naming who served them: runtime/transport/quant."""
    return rows.assign(cell=label(rows, WHO))


def with_cell(rows: pd.DataFrame) -> pd.DataFrame:
    """Warm, successful single-stream requests without cache reuse, labelled runtime/transport/quant."""
    warm = single_stream(rows)
    return labelled(warm[~warm["cache_reuse"].astype(bool)])


def intervals(data: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Per group: the median of `value`, its 95 % interval (lo, hi; NaN where n cannot support one) and n."""
    out = []
    for key, g in data.groupby(by, sort=True):
        est = median_ci(g[value], g["window"] if "window" in g else None)
        out.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "median": est.value, "lo": est.lo,
                    "hi": est.hi, "n": est.n})
    return pd.DataFrame(out, columns=[*by, "median", "lo", "hi", "n"])


def errors(stats: pd.DataFrame) -> np.ndarray:
    """Asymmetric error bars (below, above) from an intervals() frame; 0 where there is no interval."""
    return np.vstack([(stats["median"] - stats["lo"]).fillna(0), (stats["hi"] - stats["median"]).fillna(0)])


def bar(data: pd.DataFrame, value: str, xlabel: str, title: str, path: Path, fmt: str, dpi: int) -> None:
    """Horizontal bars of the per-cell median with its 95 % interval (n in the label)."""
    stats = intervals(data, ["cell"], value).sort_values("median")
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(stats), 3) + 1.2))
    ax.barh([f"{c} (n={n})" for c, n in zip(stats["cell"], stats["n"])], stats["median"], xerr=errors(stats),
            capsize=3, color="#4C72B0")
    ax.set(xlabel=xlabel, ylabel="", title=title)
    save(fig, path, fmt, dpi)


def save(fig, path: Path, fmt: str, dpi: int) -> None:
    fig.tight_layout()
    fig.savefig(path.with_suffix(f".{fmt}"), dpi=dpi)
    plt.close(fig)


def versus_length(data: pd.DataFrame, value: str, ylabel: str, title: str, path: Path, fmt: str, dpi: int) -> None:
    """Median and its 95 % interval against prompt length, one line per cell, one panel per workload."""
    data = data[data["workload"] != "chat"]
    workloads = sorted(data["workload"].unique())
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads) + 1.5, 3.6), squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        for name, g in intervals(data[data["workload"] == workload], ["cell", "prompt_tokens"], value).groupby("cell"):
            ax.errorbar(g["prompt_tokens"], g["median"], yerr=errors(g), marker="o", capsize=3, label=name)
        ax.set(xlabel="prompt tokens", ylabel=ylabel, title=workload)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(title)
    fig.savefig(path.with_suffix(f".{fmt}"), dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def itl_cdf(data: pd.DataFrame) -> pd.DataFrame:
    """Empirical CDF of every inter-token gap (ms) per cell."""
    parts = []
    for cell, group in data.groupby("cell"):
        gaps = np.sort([g * 1e3 for lst in group["itl_s"] for g in lst])
        if len(gaps):
            parts.append(pd.DataFrame({"cell": cell, "itl_ms": gaps, "cdf": np.arange(1, len(gaps) + 1) / len(gaps)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["cell", "itl_ms", "cdf"])


def versus_context(data: pd.DataFrame, value: str, ylabel: str, title: str, path: Path, fmt: str, dpi: int,
                   logy: bool = False) -> None:
    """Median and its 95 % interval against prompt tokens on a log x axis, one line per runtime/transport/quant."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, g in intervals(data, ["cell", "prompt_tokens"], value).groupby("cell"):
        ax.errorbar(g["prompt_tokens"], g["median"], yerr=errors(g), marker="o", capsize=3, label=name)
    ax.set(xscale="log", xlabel="prompt tokens (log)", ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    save(fig, path, fmt, dpi)


def longctx_figures(rows: pd.DataFrame, figures: Path, data_dir: Path, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Long context and caching (localbench.analysis.longctx): TTFT, decode tok/s and memory vs context (cold unique
    prompts), and TTFT per chat turn with reuse on and off; each with its CSV. Figures without data are skipped."""
    made: list[Path] = []
    ok = labelled(single_stream(rows))
    cold = labelled(cold_unique(rows))
    if cold["prompt_tokens"].nunique() >= 2:
        cold = kv_columns(cold, load_config()).assign(peak_rss_mib=lambda f: f["peak_rss_bytes"] / 2**20,
                                                      kv_mib=lambda f: f["kv_runtime_bytes"] / 2**20)
        cold[["cell", "prompt_tokens", "trial", "ttft_s", "prefill_tps", "decode_tps", "peak_rss_mib", "kv_mib"]].to_csv(
            data_dir / "longctx_vs_context.csv", index=False)
        for value, ylabel, title, name, logy in (
                ("ttft_s", "TTFT (s, log)", "TTFT vs context (cold prefill)", "longctx_ttft_vs_context", True),
                ("decode_tps", "decode tokens/s", "Decode speed vs context (tokens after the prompt)",
                 "longctx_decode_vs_context", False),
                ("peak_rss_mib", "peak RSS (MiB)", "Memory vs context (peak RSS; servers: process tree)",
                 "longctx_memory_vs_context", False)):
            versus_context(cold, value, ylabel, title, figures / name, fmt, dpi, logy)
            made.append(figures / f"{name}.{fmt}")
    chat = ok[ok["workload"] == "chat"].copy()
    if len(chat):
        chat["turn"] = chat["prompt_id"].str.extract(r"-t(\d+)$")[0].astype(int)
        chat["line"] = chat["cell"] + np.where(chat["cache_reuse"].astype(bool), " reuse on", " reuse off")
        per_turn = intervals(chat, ["line", "turn"], "ttft_s")
        per_turn.to_csv(data_dir / "longctx_ttft_per_turn.csv", index=False)
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, g in per_turn.groupby("line"):
            ax.errorbar(g["turn"] + 1, g["median"], yerr=errors(g), marker="o", capsize=3, label=name,
                        linestyle="-" if name.endswith("on") else "--")
        ax.set(xlabel="chat turn (the context grows each turn)", ylabel="TTFT (s)", title="TTFT per chat turn")
        ax.legend(fontsize=8)
        save(fig, figures / "longctx_ttft_per_turn", fmt, dpi)
        made.append(figures / f"longctx_ttft_per_turn.{fmt}")
    return made


def make_all(rows: pd.DataFrame, figures: Path, data_dir: Path, fmt: str = "png", dpi: int = 120,
             style: str = "whitegrid") -> list[Path]:
    """Write every figure and its CSV; returns the figure paths (figures with no data are skipped). Rows of
    drift-flagged windows are left out."""
    rows = undrifted(rows)
    sns.set_theme(style=style)
    figures.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    ok = with_cell(rows)
    cell = reference_cell(rows)
    ref = with_cell(in_cell(rows, cell)) if cell else ok.iloc[0:0]
    ref = ref.assign(peak_rss_mib=ref["peak_rss_bytes"] / 2**20)
    where = (f"{cell['workload']} prompts, {cell['prompt_tokens']} → {cell['max_tokens']} tokens" if cell else "")
    cold = rows[(rows["phase"] == "cold") & rows["cold_start_s"].notna()].copy()
    cold = labelled(cold)
    tables = {
        "decode_throughput": intervals(ref, ["cell"], "decode_tps"),
        "cold_start": intervals(cold, ["cell"], "cold_start_s"),
        "peak_memory": ref.groupby("cell", as_index=False)["peak_rss_mib"].max(),
        "ttft_vs_length": intervals(ok, ["cell", "workload", "prompt_tokens"], "ttft_s"),
        "throughput_vs_length": intervals(ok, ["cell", "workload", "prompt_tokens"], "decode_tps"),
        "itl_cdf": itl_cdf(ref),
    }
    for name, table in tables.items():
        table.to_csv(data_dir / f"{name}.csv", index=False)
    made = []
    if len(ok):
        specs = [
            (bar, ref, "decode_tps", "decode tokens/s", f"Fig. 1: decode throughput ({where}; median, 95 % CI)",
             "fig1_throughput"),
            (bar, ref, "peak_rss_mib", "peak RSS (MiB)", f"Fig. 3: peak memory ({where}; median, 95 % CI; servers: "
             "process tree, in-process: above the pre-load baseline)", "fig3_peak_memory"),
            (versus_length, ok, "ttft_s", "TTFT (s)", "TTFT vs prompt length", "fig4_ttft_vs_length"),
            (versus_length, ok, "decode_tps", "decode tokens/s", "Throughput vs prompt length",
             "fig5_throughput_vs_length"),
        ]
        for fn, data, value, label, title, name in specs:
            fn(data, value, label, title, figures / name, fmt, dpi)
            made.append(figures / f"{name}.{fmt}")
        fig, ax = plt.subplots(figsize=(7, 4))
        sns.lineplot(data=tables["itl_cdf"], x="itl_ms", y="cdf", hue="cell", ax=ax, drawstyle="steps-post")
        ax.set(xscale="log", xlabel="inter-token latency (ms, log)", ylabel="CDF", title=f"Fig. 6: ITL CDF ({where})")
        save(fig, figures / "fig6_itl_cdf", fmt, dpi)
        made.append(figures / f"fig6_itl_cdf.{fmt}")
    load = rows[(rows["status"] == "ok") & (rows["phase"] == "load") & rows["concurrency"].notna()].copy()
    if len(load):
        load = labelled(load)
        per_level = (load.groupby(["cell", "concurrency"]).agg(ttft_p50_s=("ttft_s", "median"),
                                                               ttft_p99_s=("ttft_s", lambda v: quantile(v, 99)),
                                                               tpot_p50_s=("tpot_s", "median"),
                                                               tpot_p99_s=("tpot_s", lambda v: quantile(v, 99)))
                     .reset_index())      # a p99 only from 100 requests a level (localbench.core.stats)
        per_level.to_csv(data_dir / "load_vs_concurrency.csv", index=False)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, metric in zip(axes, ("ttft", "tpot")):
            sns.lineplot(data=per_level, x="concurrency", y=f"{metric}_p50_s", hue="cell", marker="o", ax=ax)
            sns.lineplot(data=per_level, x="concurrency", y=f"{metric}_p99_s", hue="cell", marker="x", ax=ax,
                         linestyle="--", legend=False)
            ax.set(xlabel="concurrent clients", ylabel=f"{metric.upper()} (s): p50 solid, p99 dashed (n ≥ 100)")
        fig.suptitle("Fig. 7: latency under closed-loop concurrency")
        save(fig, figures / "fig7_concurrency", fmt, dpi)
        made.append(figures / f"fig7_concurrency.{fmt}")
    if len(cold):
        bar(cold, "cold_start_s", "seconds", "Fig. 2: cold start (load -> ready)", figures / "fig2_cold_start", fmt,
            dpi)
        made.append(figures / f"fig2_cold_start.{fmt}")
    return made + longctx_figures(rows, figures, data_dir, fmt, dpi)
