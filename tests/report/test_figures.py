"""The figures draw medians with their 95 % intervals, and their CSVs carry them."""
import pandas as pd
from fakes import served_row as row

from localbench.report.figures import make_all


def test_figures_draw_medians_with_intervals(tmp_path):
    decode = [20.0, 21.0, 19.0, 22.0, 20.5, 19.5, 20.2]
    rows = pd.DataFrame([row("llamacpp", "Q4_K_M", v, 240.0, window=f"w{i % 2}", peak_rss_bytes=2**28)
                         for i, v in enumerate(decode)]
                        + [row("torch", "fp32", 8.0, 100.0, peak_rss_bytes=2**29)]
                        + [row("llamacpp", "Q4_K_M", v, 240.0, prompt_tokens=512, window="w0") for v in decode])
    made = make_all(rows, tmp_path / "figures", tmp_path / "data")
    assert {p.name for p in made} >= {"fig1_throughput.png", "fig4_ttft_vs_length.png", "fig5_throughput_vs_length.png"}
    fig1 = pd.read_csv(tmp_path / "data/decode_throughput.csv").set_index("cell")
    assert fig1.loc["llamacpp/inprocess/Q4_K_M", "median"] == 20.2 and fig1.loc["llamacpp/inprocess/Q4_K_M", "n"] == 7
    assert fig1.loc["llamacpp/inprocess/Q4_K_M", "lo"] <= 19.5 and fig1.loc["llamacpp/inprocess/Q4_K_M", "hi"] >= 21.0
    assert pd.isna(fig1.loc["torch/inprocess/fp32", "lo"])             # n = 1: no interval drawn
    by_length = pd.read_csv(tmp_path / "data/throughput_vs_length.csv")
    by_length = by_length.set_index(["cell", "prompt_tokens"])["lo"]
    assert by_length[("llamacpp/inprocess/Q4_K_M", 512)] <= 19.5 and pd.isna(by_length[("torch/inprocess/fp32", 128)])
