"""Long context and caching: per-length cost, KV-cache bytes (runtime vs theory), cache reuse, chat turns.

Tables come from the per-request rows on matched cells (localbench.analysis.cells.MATCH: workload, prompt tokens,
output tokens, cache reuse, concurrency); `section()` assembles them with the figures
(localbench.report.figures.longctx_figures) into the report's "Long context and caching" section.

KV-cache bytes, three sources per row (Usage.extra): llama.cpp's KV buffer from its load log (allocated for
all n_ctx cells at load: `kv_buffer_bytes`, `kv_cells`), the tensors of torch's DynamicCache and mlx-lm's
cache objects (`kv_cache_bytes`, allocated as they grow). The check beside them is the model config's
    layers x KV heads x head dim x 2 (K and V) x bytes per element x tokens.
Cache reuse: a reuse cell (cache_reuse true) against the same prompt with reuse off; the tokens reused are
the runtime's own report (`cached_tokens`: llama.cpp in-process from its prompt-eval count, llama-server's
usage.prompt_tokens_details, mlx-lm's trimmed prefix / server usage, Ollama's runner debug log; NaN where a
runtime reports none). The first prompt of a shared-prefix set and a chat's first turn prime the cache: the
others (`can_hit`) are the requests a cache can serve.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from localbench.analysis.cells import WHO, cold_unique, label, single_stream
from localbench.core.hardware import DTYPE_BYTES, kv_bytes_per_token
from localbench.core.stats import mean_std, percentile
from localbench.workload.prompts import can_hit


def kv_theoretical(config: dict, tokens: int, bytes_per_element: float) -> float:
    """The theoretical KV-cache bytes of `tokens` tokens (kv_bytes_per_token x tokens)."""
    return kv_bytes_per_token(config, bytes_per_element) * int(tokens)


def load_config(path: Path = Path("models/source/config.json")) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def extra_of(row) -> dict:
    raw = row.get("extra") if isinstance(row, dict) else row
    if not raw or (isinstance(raw, float) and math.isnan(raw)):
        return {}
    try:
        return json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        return {}


def cached_tokens(extra: dict) -> float:
    """Prompt tokens the runtime says it took from its cache (NaN where it says nothing)."""
    if extra.get("cached_tokens") is not None:
        return float(extra["cached_tokens"])
    details = (extra.get("usage") or {}).get("prompt_tokens_details") or {}
    if details.get("cached_tokens") is not None:
        return float(details["cached_tokens"])
    return float("nan")


def kv_columns(rows: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Per row: the runtime's KV bytes and what theory gives for the same tokens and element size.

    llama.cpp's buffer holds n_ctx cells of f16 whatever the prompt; torch's and mlx's caches hold the
    tokens of the request (mlx allocates in steps of 256) in the activations' dtype (torch: the artifact's)."""
    out = rows.copy()
    ex = out["extra"].map(extra_of) if "extra" in out else pd.Series([{}] * len(out), index=out.index)
    runtime_kv, cells, theory = [], [], []
    for (_, r), e in zip(out.iterrows(), ex):
        if e.get("kv_buffer_bytes"):             # llama.cpp: allocated for kv_cells (n_ctx), f16
            runtime_kv.append(float(e["kv_buffer_bytes"]))
            n, width = int(e.get("kv_cells") or 0), 2
        elif e.get("kv_cache_bytes"):
            runtime_kv.append(float(e["kv_cache_bytes"]))
            n = int(e.get("kv_cache_tokens") or 0)
            width = DTYPE_BYTES.get(str(r.get("quant")), 2) if r.get("runtime") == "torch" else \
                e.get("kv_dtype_bytes") or 2
        else:
            runtime_kv.append(float("nan"))
            n, width = 0, 2
        cells.append(n)
        theory.append(kv_theoretical(config, n, width) if config and n else float("nan"))
    out["kv_runtime_bytes"], out["kv_tokens_held"], out["kv_theory_bytes"] = runtime_kv, cells, theory
    out["cached_tokens"] = [cached_tokens(e) for e in ex]
    return out


def per_length(rows: pd.DataFrame, config: dict, min_tokens: int = 0) -> pd.DataFrame:
    """Per runtime/transport/quant and prompt length (cold unique prompts): n, TTFT, prefill, decode, ITL,
    peak RSS, the runtime's KV bytes and the theoretical KV for the same tokens."""
    data = cold_unique(rows)
    data = kv_columns(data[data["prompt_tokens"] >= min_tokens], config)
    out = []
    for key, g in data.groupby(WHO + ["prompt_tokens", "max_tokens"], sort=True):
        gaps = [x * 1e3 for lst in g["itl_s"] for x in (lst if lst is not None else [])]
        kv, theory = g["kv_runtime_bytes"].max(), g["kv_theory_bytes"].max()
        out.append({"runtime/transport/quant": "/".join(map(str, key[:3])), "prompt tokens": key[3],
                    "out": key[4], "n": len(g), "TTFT (s)": mean_std(g["ttft_s"]),
                    "prefill tok/s": mean_std(g["prefill_tps"]), "decode tok/s": mean_std(g["decode_tps"]),
                    "ITL p50 (ms)": percentile(gaps, 50), "peak RSS (MiB)": g["peak_rss_bytes"].max() / 2**20,
                    "KV runtime (MiB)": kv / 2**20, "KV theory (MiB)": theory / 2**20,
                    "KV tokens": int(g["kv_tokens_held"].max()),
                    "runtime / theory": kv / theory if theory == theory and theory else float("nan")})
    return pd.DataFrame(out)


def not_run(rows: pd.DataFrame) -> pd.DataFrame:
    """Long-context and reuse cells that did not give a number: status and reason, per runtime and length."""
    bad = rows[(rows["status"] != "ok") & (rows["phase"] == "warm") & (rows["workload"].isin(
        ["unique", "prefix", "chat"])) & (rows["prompt_tokens"] >= 1024)]
    if bad.empty:
        return pd.DataFrame()
    return (bad.groupby(WHO + ["workload", "prompt_tokens", "cache_reuse", "status"], dropna=False)
            .agg(requests=("status", "size"), reason=("error", "first")).reset_index())


def reuse(rows: pd.DataFrame) -> pd.DataFrame:
    """Per runtime/transport/quant, reuse workload and length: TTFT with reuse off and on (matched cells: the same
    prompts), speedup, tokens the runtime reused, hit rate (reused / prompt tokens over the reuse requests)."""
    warm = kv_columns(single_stream(rows[rows["workload"].isin(["prefix", "chat"])]), {})
    out = []
    for key, g in warm.groupby(WHO + ["workload", "max_tokens"], sort=True):
        on, off = g[g["cache_reuse"].astype(bool)], g[~g["cache_reuse"].astype(bool)]
        both = set(on["prompt_id"]) & set(off["prompt_id"])
        if not len(on):
            continue
        on_m, off_m = on[on["prompt_id"].isin(both)], off[off["prompt_id"].isin(both)]
        t_on, t_off = on_m["ttft_s"].mean(), off_m["ttft_s"].mean()
        hits = on["cached_tokens"].dropna()
        later = on_m["prompt_id"].map(can_hit).astype(bool)
        t_hit = on_m.loc[later, "ttft_s"].mean()
        t_miss = off_m.loc[off_m["prompt_id"].map(can_hit).astype(bool), "ttft_s"].mean()
        out.append({"runtime/transport/quant": "/".join(map(str, key[:3])), "workload": key[3],
                    "prompts": len(set(on["prompt_id"])), "context tokens": f"{on['prompt_tokens'].min()}–"
                    f"{on['prompt_tokens'].max()}", "n on/off": f"{len(on_m)}/{len(off_m)}",
                    "TTFT off (s)": t_off if both else float("nan"), "TTFT on (s)": t_on if both else float("nan"),
                    "speedup (off/on)": t_off / t_on if both and t_on else float("nan"),
                    "latency cut": 1 - t_on / t_off if both and t_off else float("nan"),
                    "speedup after the first": t_miss / t_hit if later.any() and t_hit else float("nan"),
                    "tokens reused (mean)": hits.mean() if len(hits) else float("nan"),
                    "hit rate": hits.sum() / on.loc[hits.index, "prompt_tokens"].sum() if len(hits) else float("nan"),
                    "requests with a hit": f"{int((hits > 0).sum())}/{len(on)}" if len(hits) else "not reported"})
    return pd.DataFrame(out)


def turns(rows: pd.DataFrame) -> pd.DataFrame:
    """Chat sessions: TTFT per turn with reuse off and on (mean over trials), tokens reused, per runtime."""
    warm = kv_columns(single_stream(rows[rows["workload"] == "chat"]), {})
    if warm.empty:
        return pd.DataFrame()
    warm = warm.assign(turn=warm["prompt_id"].str.extract(r"-t(\d+)$")[0].astype(float),
                       who=label(warm, WHO), reuse=np.where(warm["cache_reuse"].astype(bool), "on", "off"))
    g = warm.groupby(["who", "prompt_id", "turn", "prompt_tokens", "reuse"]).agg(
        ttft=("ttft_s", "mean"), reused=("cached_tokens", "mean")).reset_index()
    wide = g.pivot_table(index=["who", "prompt_id", "turn", "prompt_tokens"], columns="reuse",
                         values=["ttft", "reused"], aggfunc="mean")
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    wide = wide.reset_index().sort_values(["who", "prompt_id"])
    out = pd.DataFrame({"runtime/transport/quant": wide["who"], "session turn": wide["prompt_id"],
                        "context tokens": wide["prompt_tokens"],
                        "TTFT off (s)": wide.get("ttft_off", np.nan), "TTFT on (s)": wide.get("ttft_on", np.nan),
                        "reused (on)": wide.get("reused_on", np.nan)})
    out["speedup"] = out["TTFT off (s)"] / out["TTFT on (s)"]
    return out


def bounded(rows: pd.DataFrame) -> pd.DataFrame:
    """Cold unique cells run with a bounded KV (MLX max_kv_size) beside the unbounded ones: memory, decode speed."""
    warm = kv_columns(cold_unique(rows), {})
    ex = warm["extra"].map(extra_of)
    warm = warm.assign(bound=[e.get("max_kv_size") for e in ex])
    mlx = warm[warm["runtime"] == "mlx"]
    if mlx["bound"].isna().all():
        return pd.DataFrame()
    return pd.DataFrame([{"runtime/transport/quant": "/".join(map(str, k[:3])), "prompt tokens": k[3],
                          "max_kv_size": k[4], "n": len(g), "decode tok/s": mean_std(g["decode_tps"]),
                          "peak RSS (MiB)": g["peak_rss_bytes"].max() / 2**20,
                          "KV runtime (MiB)": g["kv_runtime_bytes"].max() / 2**20}
                         for k, g in mlx.fillna({"bound": "none"}).groupby(WHO + ["prompt_tokens", "bound"])])
