"""plots/quality: the quality frontier's figure (decode tok/s vs KL divergence with their 95 % intervals, the
Pareto front drawn) and its data as CSV (a DVC plot), written by the `quality-frontier` stage."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

CSV_COLUMNS = ["runtime", "forward", "format", "quant", "size_mib", "bits_per_weight", "convert_s", "ppl", "delta_ppl",
               "delta_ppl_lo", "delta_ppl_hi", "kld_mean", "kld_lo", "kld_hi", "kld_p99", "top1", "top1_lo", "top1_hi",
               "tokens_scored", "ci_method", "decode_tps", "decode_tps_lo", "decode_tps_hi", "decode_n", "pareto"]


def error_bars(value: pd.Series, lo: pd.Series, hi: pd.Series) -> list[pd.Series]:
    """matplotlib's [below, above] bar lengths of an interval (0 where there is none)."""
    return [(value - lo).clip(lower=0).fillna(0), (hi - value).clip(lower=0).fillna(0)]


def figure(frame: pd.DataFrame, path: Path, dpi: int = 120, style: str = "whitegrid") -> Path | None:
    """Decode tok/s vs mean KL divergence, one point per artifact with its 95 % intervals (bars), the Pareto front
    drawn; None without data."""
    data = frame[(frame["status"] == "ok") & frame["decode_tps"].notna() & frame["kld_mean"].notna()].copy()
    data["pareto"] = data["pareto"].astype(bool)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data.empty:
        return None
    sns.set_theme(style=style)
    data["artifact"] = data["runtime"] + " " + data["quant"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.errorbar(data["kld_mean"], data["decode_tps"], fmt="none", ecolor="grey", elinewidth=0.8, capsize=2,
                xerr=error_bars(data["kld_mean"], data.get("kld_lo", data["kld_mean"]),
                                data.get("kld_hi", data["kld_mean"])),
                yerr=error_bars(data["decode_tps"], data.get("decode_tps_lo", data["decode_tps"]),
                                data.get("decode_tps_hi", data["decode_tps"])))
    sns.scatterplot(data=data, x="kld_mean", y="decode_tps", hue="runtime", style="pareto", s=80, ax=ax)
    front = data[data["pareto"]].sort_values("kld_mean")
    ax.step(front["kld_mean"], front["decode_tps"], where="post", color="black", lw=1, ls="--",
            label="Pareto front")
    for r in data.itertuples():
        ax.annotate(r.artifact, (r.kld_mean, r.decode_tps), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(left=0)
    ax.set(xlabel="mean KL divergence vs the reference (nats/token, symlog)", ylabel="decode tok/s (warm, median)",
           title="Quality vs speed, one point per artifact (bars: 95 % intervals)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write(frame: pd.DataFrame, out: Path, cfg: dict) -> None:
    """Replace `out`'s contents with frontier.csv (the evaluated artifacts) and frontier.png; `cfg`: the quality
    params block (`figure.dpi`)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        old.unlink()
    ok = frame[frame["status"] == "ok"]
    ok = ok.assign(artifact=ok["runtime"] + "/" + ok["quant"])
    ok.reindex(columns=["artifact", *CSV_COLUMNS]).to_csv(out / "frontier.csv", index=False)
    figure(frame, out / "frontier.png", dpi=int((cfg.get("figure") or {}).get("dpi", 120)))
