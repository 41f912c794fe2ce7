"""report/index.html from hand-made rows: one self-contained page written from the same sections as report.md,
charts Vega-Lite can draw, the summary's verdicts, claim links that reach a cell, the headline metrics.
(In a real browser: tests/test_e2e.py, on the ci profile's page.)"""
import json
import re

import pandas as pd
import pytest
import vl_convert
from fakes import served_row as row

from localbench.analysis.aggregate import headline
from localbench.analysis.bundles import Bundle, matched_hosts
from localbench.analysis.cells import cell_anchor
from localbench.report import charts, page, summary
from localbench.report.render import render, write_report
from localbench.report.sections import Section, to_markdown


def rows_of(fast: float, slow: float, n: int = 6, spread: float = 0.02, lengths=(128, 1024)) -> pd.DataFrame:
    """llama.cpp at `fast` and torch at `slow` tok/s over two windows, n trials a cell, at each length."""
    out = []
    for length in lengths:
        for i in range(n):
            jitter = 1 + spread * ((i % 3) - 1)
            out += [row("llamacpp", "Q4_K_M", fast * jitter, 400.0, prompt_tokens=length, window=f"w{i % 2}",
                        peak_rss_bytes=600 * 2**20, prompt_id=f"p{length}-{i}", trial=i),
                    row("torch", "fp32", slow * jitter, 300.0, prompt_tokens=length, window=f"w{i % 2}",
                        peak_rss_bytes=900 * 2**20, prompt_id=f"p{length}-{i}", trial=i)]
    return pd.DataFrame(out)


def bundle(rows: pd.DataFrame, host: str = "here") -> Bundle:
    return Bundle(host=host, requests=rows.assign(host=host), artifacts=pd.DataFrame(), bandwidth={})


def sections_of(rows: pd.DataFrame) -> list[Section]:
    artifacts = pd.DataFrame([{"model": "m", "format": "gguf", "quant": "Q4_K_M", "size_bytes": 2**29,
                               "bits_per_weight": 4.8, "convert_s": 1.0, "tool": "t", "status": "ok", "error": None}])
    cfg = {"title": "t", "fidelity_tolerance": 0.1, "drift_tolerance": 0.1}
    return render(rows, artifacts, [], {"host": "here"}, [], {}, cfg, hosts=[bundle(rows)])


def test_summary_says_ahead_only_where_the_interval_excludes_one():
    clear = summary.recommendations([bundle(rows_of(30.0, 10.0))], "here").set_index("scenario")
    short = clear.loc["short prompts: decode speed"]
    assert short["use"] == "llamacpp/inprocess/Q4_K_M" and short["verdict"] == "ahead"
    assert short["_links"] == [cell_anchor({"runtime": r, "transport": "inprocess", "quant": q, "workload": "unique",
                                            "prompt_tokens": 128, "max_tokens": 32, "cache_reuse": False})
                               for r, q in (("llamacpp", "Q4_K_M"), ("torch", "fp32"))]
    assert clear.loc["smallest memory: peak RSS at the reference cell", "use"] == "llamacpp/inprocess/Q4_K_M"
    tied = summary.recommendations([bundle(rows_of(10.1, 10.0, spread=0.2))], "here").set_index("scenario")
    assert tied.loc["short prompts: decode speed", "verdict"] == "no detectable difference"
    thin = summary.recommendations([bundle(rows_of(30.0, 10.0, n=2))], "here").set_index("scenario")
    assert thin.loc["short prompts: decode speed", "verdict"] == "insufficient n"


def test_every_chart_is_valid_vega_lite_with_intervals_and_filter_keys():
    made = charts.charts([bundle(rows_of(30.0, 10.0)), bundle(rows_of(60.0, 20.0), "gpu")], None)
    assert {"fig5_throughput_vs_length", "fig4_ttft_vs_length", "fig6_itl_cdf"} <= {c.name for c in made}
    for c in made:
        svg = vl_convert.vegalite_to_svg({**c.spec, "datasets": {"rows": c.data}})
        assert svg.count("<path") > 3, c.name                        # drawn, with marks
        assert all(rec.get("runtime") for rec in c.data), c.name     # every record follows the runtime filter
    decode = next(c for c in made if c.name == "fig5_throughput_vs_length")
    assert {r["host"] for r in decode.data} == {"here", "gpu"}
    assert all(r["lo"] <= r["median"] <= r["hi"] and r["n"] == 6 for r in decode.data)


def test_page_is_one_file_from_the_same_sections_as_the_markdown(tmp_path):
    sections = sections_of(rows_of(30.0, 10.0))
    write_report(sections, charts.charts([bundle(rows_of(30.0, 10.0))], None), tmp_path, "t")
    md, html = (tmp_path / "report.md").read_text(), (tmp_path / "index.html").read_text()
    assert md == to_markdown(sections)
    for s in sections:
        assert f"{'#' * s.level} {s.title}" in md and f"id='{s.id}'" in html
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=['\"]?(https?:)?//", html)     # nothing fetched
    assert html.count("<script") == 3                                # the data, Vega's bundle, the page's script
    for collapsed in ("calibration", "fidelity", "drift"):
        assert re.search(f"<details id='{collapsed}'>", html)         # closed until clicked
    ids = set(re.findall(r"<tr id='([^']+)'", html))
    links = re.findall(r"<a class='evidence' href='#([^']+)'", html)
    assert links and set(links) <= ids                               # every evidence link reaches a cell
    assert "_links" not in md and "_id" not in md


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>"])
def test_data_cannot_close_the_script(text):
    c = charts.Chart("x", "x", {"mark": "point", "data": {"name": "rows"}}, [{"runtime": text}])
    html = page.page([Section("top", "t", level=1)], [c], "t")
    assert text not in html and html.count("</script>") == 3


def test_headline_is_a_few_numbers_per_runtime():
    metrics = headline(rows_of(30.0, 10.0))
    assert metrics["cell"] == "unique 128→32"
    assert metrics["llamacpp"] == {"decode_tps": 30.0, "ttft_s": 0.32, "peak_rss_mib": 600.0}
    assert metrics["artifact"] == {"llamacpp": "inprocess/Q4_K_M", "torch": "inprocess/fp32"}
    assert list(metrics)[:3] == ["cell", "llamacpp", "torch"]           # the numbers lead `dvc exp show`
    json.dumps(metrics)


def test_tokens_per_joule_in_the_energy_table_the_hosts_table_and_a_chart():
    """Energy rows (as a GPU host's counter gives them) reach the energy section, the multi-host table and a chart;
    a host without a counter shows no tok/J column of its own and no invented number."""
    gpu = rows_of(60.0, 20.0)
    gpu = gpu.assign(decode_j_per_token=400.0 / gpu["decode_tps"], decode_tok_per_j=gpu["decode_tps"] / 400.0,
                     prefill_j_per_token=0.01, idle_power_w=90.0, energy_meter="nvml total energy: GPU #0")
    energy = next(s for s in sections_of(gpu) if s.id == "energy").blocks[-1].set_index(["runtime", "prompt_tokens"])
    assert energy.loc[("llamacpp", 128), "decode tok/J"].startswith("0.15")        # 60 tok/s at 400 W
    assert energy.loc[("torch", 1024), "J / output token"] == pytest.approx(20.0)
    assert next(s for s in sections_of(rows_of(30.0, 10.0)) if s.id == "energy").blocks[-1].empty
    made = {c.name: c for c in charts.charts([bundle(rows_of(30.0, 10.0)), bundle(gpu, "gpu")], None)}
    assert {r["host"] for r in made["energy_tok_per_j"].data} == {"gpu"}
    m = matched_hosts([bundle(rows_of(30.0, 10.0)), bundle(gpu, "gpu")])
    assert "gpu · decode tok/J p50" in m and "here · decode tok/J p50" not in m
