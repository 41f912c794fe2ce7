"""The report's summary: per host, the runtime to use per scenario, with the numbers and intervals behind it.

A scenario is one matched cell and one metric (SCENARIOS). Its pick is the artifact (runtime/transport/quant) with
the best median there; the runner-up is the best artifact of another runtime; the margin is the ratio of their
medians with its 95 % interval (localbench.core.stats.ratio_ci, windows as clusters), and the pick reads "ahead"
only where that interval excludes 1, else "no detectable difference": a tie is said, not broken by noise.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from localbench.analysis.bundles import Bundle
from localbench.analysis.cells import WHO, anchors, label, reference_rows, single_stream, undrifted
from localbench.analysis.decisions import cell_text, window_ids
from localbench.core.stats import median_ci, ratio_ci
from localbench.report.sections import Section


@dataclass(frozen=True)
class Scenario:
    """What a user asks ("long context"), the metric deciding it, its direction and how its cell is chosen."""
    name: str
    metric: str
    unit: str
    lower_is_better: bool
    rows: Callable[[pd.DataFrame], pd.DataFrame]      # the candidate rows of one host, all in one cell


def widest_cell(frame: pd.DataFrame, prefer_long: bool) -> pd.DataFrame:
    """The rows of the cell the most runtimes measured (longest or shortest prompt on ties)."""
    if frame.empty:
        return frame
    keys = ["workload", "prompt_tokens", "max_tokens", "cache_reuse", "concurrency"]
    counts = frame.groupby(keys)["runtime"].nunique().reset_index()
    counts["length"] = counts["prompt_tokens"] * (-1 if prefer_long else 1)
    best = counts.sort_values(["runtime", "length"], ascending=[False, True]).iloc[0]
    return frame[(frame[keys] == best[keys]).all(axis=1)]


def unique_at(rows: pd.DataFrame, longest: bool) -> pd.DataFrame:
    """Cold unique single-stream rows at the shortest (or longest) length that two runtimes measured (else any)."""
    warm = single_stream(rows)
    warm = warm[(warm["workload"] == "unique") & ~warm["cache_reuse"].astype(bool)]
    if warm.empty:
        return warm
    per_length = warm.groupby("prompt_tokens")["runtime"].nunique()
    lengths = per_length[per_length >= 2].index if (per_length >= 2).any() else per_length.index
    at = max(lengths) if longest else min(lengths)
    return widest_cell(warm[warm["prompt_tokens"] == at], longest)


def cached(rows: pd.DataFrame) -> pd.DataFrame:
    warm = single_stream(rows)
    return widest_cell(warm[(warm["workload"] == "prefix") & warm["cache_reuse"].astype(bool)], True)


def under_load(rows: pd.DataFrame) -> pd.DataFrame:
    load = rows[(rows["status"] == "ok") & (rows["phase"] == "load") & rows["concurrency"].notna()
                & rows["rate"].isna()]
    if load.empty:
        return load
    levels = load.groupby("concurrency")["runtime"].nunique()
    return load[load["concurrency"] == (levels[levels >= 2].index.max() if (levels >= 2).any() else levels.index.max())]


SCENARIOS = [
    Scenario("short prompts: decode speed", "decode_tps", "tok/s", False, lambda r: unique_at(r, longest=False)),
    Scenario("long context: TTFT at the longest prompt", "ttft_s", "s", True, lambda r: unique_at(r, longest=True)),
    Scenario("cached prefixes: TTFT with reuse on", "ttft_s", "s", True, cached),
    Scenario("concurrency: TTFT at the highest load level", "ttft_s", "s", True, under_load),
    Scenario("smallest memory: peak RSS at the reference cell", "peak_rss_mib", "MiB", True,
             lambda r: reference_rows(r).assign(peak_rss_mib=lambda f: f["peak_rss_bytes"] / 2**20)),
]


def where(frame: pd.DataFrame) -> str:
    """The cell of a scenario's rows, for people."""
    first = frame.iloc[0]
    if first["phase"] == "load":
        return f"{first['workload']} {int(first['prompt_tokens'])}→{int(first['max_tokens'])}, " \
               f"{int(first['concurrency'])} concurrent clients"
    return cell_text(first)


def pick(frame: pd.DataFrame, s: Scenario, host: str, local: bool) -> dict | None:
    """The scenario's row of the summary for one host's candidate rows (None without any)."""
    frame = frame[frame[s.metric].notna()]
    if frame.empty:
        return None
    frame = frame.assign(who=label(frame, WHO))
    est = {who: median_ci(g[s.metric], window_ids(g)) for who, g in frame.groupby("who")}
    order = sorted(est, key=lambda w: est[w].value if s.lower_is_better else -est[w].value)
    best = order[0]
    runtime_of = frame.drop_duplicates("who").set_index("who")["runtime"]
    others = [w for w in order if runtime_of[w] != runtime_of[best]]
    row = {"host": host, "scenario": s.name, "cell": where(frame), "use": best,
           f"median [95 % CI] (n)": f"{est[best].text()} {s.unit}"}
    if others:
        runner = others[0]
        a, b = frame[frame["who"] == best], frame[frame["who"] == runner]
        # oriented so that > 1 means the pick is better
        r = ratio_ci(a[s.metric], b[s.metric], window_ids(a), window_ids(b)) if s.lower_is_better else \
            ratio_ci(b[s.metric], a[s.metric], window_ids(b), window_ids(a))
        margin = (f"{r.ratio:.3g}x [{r.lo:.3g}, {r.hi:.3g}]" if r.lo == r.lo else f"{r.ratio:.3g}x [–]")
        verdict = ("insufficient n" if r.lo != r.lo else "ahead" if r.lo > 1 else "no detectable difference")
        row.update({"runner-up (another runtime)": runner, "its median": f"{est[runner].text()} {s.unit}",
                    "pick ÷ runner-up (better = > 1)": margin, "verdict": verdict})
        shown = frame[frame["who"].isin([best, runner])]
    else:
        row.update({"runner-up (another runtime)": "none measured", "verdict": "only runtime measured"})
        shown = frame[frame["who"] == best]
    row["_links"] = list(anchors(shown)) if local and shown["phase"].eq("warm").all() else ["hosts"]
    return row


def recommendations(hosts: list[Bundle], local_host: str | None) -> pd.DataFrame:
    """Per host and scenario: the pick, its runner-up of another runtime, their margin and verdict."""
    out = []
    for b in hosts:
        rows = undrifted(b.requests)
        for s in SCENARIOS:
            found = pick(s.rows(rows), s, b.host, b.host == local_host)
            if found:
                out.append(found)
    return pd.DataFrame(out)


def section(hosts: list[Bundle], local_host: str | None) -> Section:
    """The summary section: which runtime to use per scenario, per host, and how sure that is."""
    frame = recommendations(hosts, local_host)
    intro = ("Per machine and scenario: the artifact (runtime/transport/quant) with the best median in the scenario's "
             "matched cell, the best artifact of another runtime beside it, and the ratio of their medians with its "
             "95 % interval (bootstrap over measurement windows). **ahead**: the interval excludes 1; **no detectable "
             "difference**: it does not, so either is a fair choice on this evidence. Rows of drift-flagged windows "
             "are left out. The cells behind each row are linked on the page (report/index.html).\n")
    return Section("summary", "Summary: which runtime, per scenario", [intro, frame if len(frame) else
                                                                       "_No measured cell to decide on._\n"])
