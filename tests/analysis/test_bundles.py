"""Several machines, one report: the committed GPU bundles (results/<host>/) and matched cells across hosts."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from localbench.analysis import bundles as compare
from localbench.analysis.aggregate import summarize
from localbench.analysis.cells import single_stream, sweep_passes
from localbench.report import bundles as bundles_section

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS_HOST = "vm-b18d9206dc-frameworks"   # the lent H200's `frameworks` part with the current harness (README)
LLAMACPP_HOST = "vm-b18d9206dc-llamacpp"       # the lent H200's `llamacpp` part: llama-server and Ollama (README)
INPROCESS_HOST = "vm-07de7a97d3-llamacpp-load"  # a lent H100: in-process beside llama-server, then the sweep (README)
GPU_HOST = INPROCESS_HOST
QUANT_HOST = "vm-07de7a97d3-llamacpp-only"     # a lent H100: llama-server on F16, Q8_0 and Q4_K_M (README)
LONG_HOST = "vm-af51c8246a-frameworks-load"    # a lent H100: PyTorch to 100k with YaRN, mlx_lm.server's sweep (README)
MLX_HOST = "vm-af51c8246a-mlx"                  # a lent H100: MLX to 100k with YaRN, both transports, chat (README)


@pytest.fixture(scope="module")
def bundles():
    return compare.load_bundles(ROOT / "results")


def bundle_of(bundles, host: str):
    found = [b for b in bundles if b.host == host]
    assert found, f"results/{host}/ is missing or unreadable"
    return found[0]


@pytest.fixture(scope="module")
def gpu(bundles):
    """The bundle the multi-host tests build on: a GPU host with single-stream cells and a separate sweep pass."""
    return bundle_of(bundles, GPU_HOST)


def test_gpu_roofline_probe_reads_the_copy_bandwidth(gpu):
    copy = gpu.check["copy"]["gbps_median"]
    assert copy > 2500
    assert abs(gpu.bandwidth["cuda"] / copy - 1) < 0.10


def test_gpu_decode_stays_under_each_rows_roofline(gpu):
    rows = compare.host_cells(gpu)
    assert len(rows) >= 4
    llama = rows[rows["runtime"] == "llamacpp"]
    assert set(llama["memory"]) == {"cuda"}          # llama.cpp's probe says 'gpu': the host's CUDA memory
    assert rows["of_ceiling"].between(0.001, 1.0).all(), rows[["runtime", "quant", "of_ceiling"]]
    assert (rows["ceiling_kv_tps"] < rows["ceiling_tps"]).all()      # the KV read lowers the ceiling
    serving = compare.serving(gpu)
    c64 = serving[(serving["runtime"] == "llamacpp") & (serving["concurrency"] == 64)]
    c1 = serving[(serving["runtime"] == "llamacpp") & (serving["concurrency"] == 1)]
    assert (c64.set_index("quant")["output_throughput"] > c1.set_index("quant")["output_throughput"]).all()


def _other_host(gpu, factor=0.5):
    """A second machine: the GPU bundle's llama-server Q4_K_M rows at 1024 tokens at `factor` x the speed, plus
    one cell no other host has (another max_tokens)."""
    r = gpu.requests
    sweep_runs = set(r.loc[r["phase"] == "load", "run_id"])
    same = r[(r["runtime"] == "llamacpp") & (r["transport"] == "server") & (r["quant"] == "Q4_K_M")
             & (r["prompt_tokens"] == 1024)
             & (r["phase"] == "warm") & ~r["run_id"].isin(sweep_runs)].copy()
    same["decode_tps"] *= factor
    lonely = same.head(1).assign(max_tokens=64)
    rows = pd.concat([same, lonely], ignore_index=True).assign(host="mac-test")
    return dataclasses.replace(gpu, host="mac-test", requests=rows, manifest={**gpu.manifest, "host": "mac-test",
                                                                              "gpu": "Apple M-test"},
                               bandwidth={"cpu": 100.0, "mps": 400.0}, check={}, path=None)


def test_matched_cells_only_and_one_column_group_per_host(gpu):
    other = _other_host(gpu)
    m = compare.matched_hosts([gpu, other])
    assert len(m) == 1, m[bundles_section.SHOWN]
    cell = m.iloc[0]
    assert (cell["runtime"], cell["transport"], cell["quant"], cell["prompt_tokens"], cell["max_tokens"]) == \
        ("llamacpp", "server", "Q4_K_M", 1024, 128)
    assert cell["mac-test · decode tok/s p50"] == pytest.approx(cell[f"{GPU_HOST} · decode tok/s p50"] / 2)
    # each host against its own roofline: 'gpu' on the Mac is its mps memory, 400 GB/s
    weights = gpu.artifacts.set_index("quant").loc["Q4_K_M", "size_bytes"]
    assert cell["mac-test · % of roofline"] == pytest.approx(cell["mac-test · decode tok/s p50"] / (400e9 / weights))
    assert [c.split(" · ")[0] for c in m.columns if " · " in c] == [GPU_HOST] * 5 + ["mac-test"] * 5   # with tok/J
    assert compare.matched_hosts([gpu]).empty


def test_section_names_each_machine(gpu):
    md = bundles_section.section([gpu, _other_host(gpu)]).markdown()
    assert f"NVIDIA H100 80GB HBM3 ({GPU_HOST})" in md and "Apple M-test (mac-test)" in md
    matched_part = md.split("### Matched single-stream cells")[1].split("###")[0]
    assert matched_part.count("| llamacpp | server | Q4_K_M | unique | 1024 | 128 | False |") == 1
    assert "c=64" in md


def test_bundle_round_trip(gpu, tmp_path):
    dest = compare.write_bundle(gpu, tmp_path)
    back = compare.load_bundle(dest)
    assert back.host == GPU_HOST and back.bandwidth == gpu.bandwidth and len(back.requests) == len(gpu.requests)
    assert json.loads((dest / "manifest.json").read_text())["gpu"] == gpu.manifest["gpu"]


def test_real_hosts_share_cells_when_several_bundles(bundles):
    if len(bundles) < 2:
        pytest.skip("one result bundle only")
    m = compare.matched_hosts(bundles)
    assert not m.empty
    decode = np.isfinite(m[[c for c in m.columns if c.endswith("decode tok/s p50")]].to_numpy(dtype=float))
    assert (decode.sum(axis=1) >= 2).all()       # every row a cell at least two hosts measured (not every host)


def test_host_cells_leave_drift_flagged_rows_out(gpu):
    """The multi-host table follows the drift rule of every other table: a flagged window's rows are not counted."""
    flagged = gpu.requests.assign(drift_flag=gpu.requests.index % 2 == 0)
    before = compare.host_cells(gpu).set_index(["runtime", "transport", "quant", "prompt_tokens"])["n"]
    after = compare.host_cells(dataclasses.replace(gpu, requests=flagged))
    after = after.set_index(["runtime", "transport", "quant", "prompt_tokens"])["n"]
    assert after.sum() < before.sum() and (after <= before.reindex(after.index)).all()


def test_matched_has_one_row_per_shared_cell(gpu):
    twin = dataclasses.replace(gpu, host="twin", requests=gpu.requests.assign(host="twin"), path=None)
    m = compare.matched_hosts([gpu, twin])
    assert len(m) == len(compare.host_cells(gpu))         # every cell once, no cross product of the keys
    assert m[[f"{GPU_HOST} · decode tok/s p50", "twin · decode tok/s p50"]].notna().all().all()
    assert (m[f"{GPU_HOST} · decode tok/s p50"] == m["twin · decode tok/s p50"]).all()


def test_sweep_runs_do_not_join_single_stream_cells(gpu):
    r = gpu.requests
    sweep_runs = set(r.loc[r["phase"] == "load", "run_id"])
    assert sweep_runs and (r["run_id"].isin(sweep_runs) & (r["phase"] == "warm")).any()
    cells = compare.host_cells(gpu).set_index(["runtime", "transport", "quant", "prompt_tokens"])
    cell = cells.loc[("llamacpp", "server", "Q4_K_M", 1024)]
    assert cell["n"] == 5          # the 5 single-stream requests, not + the sweep run's warm-up request


def test_export_writes_the_manifest_the_measure_stages_recorded(gpu, tmp_path, monkeypatch):
    """`bundles export` of another machine's data/ (after `dvc exp apply` of its experiment): its host and the
    manifest its measure stages recorded, not this machine's."""
    monkeypatch.chdir(tmp_path)
    Path("data/raw/llamacpp").mkdir(parents=True)
    gpu.requests.to_parquet("data/requests.parquet")
    gpu.artifacts.to_parquet("data/artifacts.parquet")
    Path("data/roofline.json").write_text(json.dumps({"memory_bandwidth_gbps": gpu.bandwidth}))
    Path("data/raw/llamacpp/extra.json").write_text(json.dumps({"runtime": "llamacpp", "environment": gpu.manifest}))
    monkeypatch.setenv("LOCALBENCH_HOST", "here")
    dest = compare.export(tmp_path / "results")
    manifest = json.loads((dest / "manifest.json").read_text())
    assert dest.name == gpu.manifest["fingerprint"] and manifest["gpu"] == gpu.manifest["gpu"]    # its part: unnamed
    assert "host_set_by_user" not in manifest


def test_a_run_that_measured_and_swept_keeps_its_single_stream_cells():
    """The ci and default profiles measure and sweep in one run: its single-stream cells join the hosts' table;
    only a separate sweep pass of a runtime that also has a plain run is left out."""
    from fakes import request_row
    one = pd.DataFrame([request_row(run_id="r1", trial=i, prompt_id=f"p{i}") for i in range(3)]
                       + [request_row(run_id="r1", phase="load", concurrency=4)])
    assert sweep_passes(one) == set()
    two = pd.concat([one, pd.DataFrame([request_row(run_id="r0", trial=9, prompt_id="p9")])], ignore_index=True)
    assert sweep_passes(two) == {"r1"}


def test_the_h200_frameworks_bundle_has_windows_energy_and_the_learned_quants_on_cuda(bundles):
    """The frameworks part (PyTorch and MLX on CUDA) comes from the current harness: every warm row in a window with
    its drift probe, NVML energy and idle power; MLX's learned quants measured beside plain 4-bit; torch int4 a row
    that says why it did not run, never a missing cell."""
    found = [b for b in bundles if b.host == FRAMEWORKS_HOST]
    assert found, f"results/{FRAMEWORKS_HOST}/ is missing or unreadable"
    b = found[0]
    assert b.manifest["part"] == "frameworks" and "H200" in b.manifest["gpu"] and len(b.manifest["commit"]) == 40
    r = b.requests
    warm = r[(r["status"] == "ok") & (r["phase"] == "warm")]
    assert set(warm["runtime"]) == {"torch", "mlx"} and len(warm) >= 150
    for column in ("window", "probe_gbps", "idle_power_w", "energy_j", "decode_tok_per_j"):
        assert warm[column].notna().all(), column
    assert set(warm["energy_meter"]) == {"nvml total energy: NVIDIA H200 #0"}
    assert {"dynamic_4_6", "awq_4", "4bit", "bf16"} <= set(warm.loc[warm["runtime"] == "mlx", "quant"])
    int4 = r[(r["runtime"] == "torch") & (r["quant"] == "int4")]
    assert len(int4) and set(int4["status"]) == {"unavailable"} and int4["error"].str.contains("mslk").all()
    cells = compare.host_cells(b)
    assert cells["of_ceiling"].between(0.001, 1.0).all() and cells["decode_tpj_p50"].gt(0).all()


def test_the_h200_llamacpp_bundle_has_ollama_beside_llama_server_with_energy(bundles):
    """The llamacpp part on the H200: llama-server and Ollama on the same Q4_K_M file at matched cells (1k, 32k, prefix
    reuse at 8k), llama-server past 64k, every warm row in a window with NVML energy; in-process llama.cpp absent, and
    the bundle keeps the check that says why (its native backtraces in libggml-cuda's copy of libstdc++)."""
    found = [b for b in bundles if b.host == LLAMACPP_HOST]
    assert found, f"results/{LLAMACPP_HOST}/ is missing or unreadable"
    b = found[0]
    assert b.manifest["part"] == "llamacpp" and b.manifest["fingerprint"] == FRAMEWORKS_HOST.rsplit("-", 1)[0]
    r = b.requests
    warm = r[(r["status"] == "ok") & (r["phase"] == "warm")]
    assert set(zip(warm["runtime"], warm["transport"])) == {("llamacpp", "server"), ("ollama", "server")}
    assert set(warm["quant"]) == {"Q4_K_M"} and warm["device"].str.contains("gpu|cuda").all()
    for column in ("window", "probe_gbps", "idle_power_w", "energy_j", "decode_tok_per_j"):
        assert warm[column].notna().all(), column
    matched = warm[warm["workload"] == "unique"].groupby("prompt_tokens")["runtime"].nunique()
    assert matched[1024] == matched[32000] == 2
    assert 65536 in set(warm.loc[warm["runtime"] == "llamacpp", "prompt_tokens"])
    assert warm["cache_reuse"].any()
    check = json.loads((b.path / "inprocess_check.json").read_text())
    assert check["bare"]["rc"] == 0 and check["arrow-first"]["rc"] == -11 and check["arrow-after"]["rc"] == -6
    assert "libggml-cuda" in check["backtraces"]["arrow-first"] and "std::" in check["backtraces"]["arrow-first"]
    cells = compare.host_cells(b)
    assert cells["of_ceiling"].between(0.001, 1.0).all() and cells["decode_tpj_p50"].gt(0).all()


def test_the_h100_bundle_has_llamacpp_in_process_beside_llama_server_and_the_sweep(bundles):
    """The CUDA link fix on a GPU (an H100 lease, 2026-12-07): no library of the build exports libstdc++'s own
    functions, the check's seven ways load, and llama.cpp in-process is measured beside llama-server at matched cells
    with NVML energy; the same lease's gpu-load sweep stays out of the single-stream cells and the summary."""
    found = [b for b in bundles if b.host == INPROCESS_HOST]
    assert found, f"results/{INPROCESS_HOST}/ is missing or unreadable"
    b = found[0]
    assert "H100" in b.manifest["gpu"] and b.manifest["part"] == "llamacpp-load"
    link = json.loads((b.path / "link_check.json").read_text())
    assert link["import-then-arrow"]["rc"] == 0
    assert link["cxx_runtime"] and all(lib["std_text_symbols"] == 0 for lib in link["cxx_runtime"].values())
    check = json.loads((b.path / "inprocess_check.json").read_text())
    ways = [w for w, rec in check.items() if isinstance(rec, dict) and "rc" in rec]
    assert len(ways) == 7 and all(check[w]["rc"] == 0 for w in ways), {w: check[w]["rc"] for w in ways}
    warm = single_stream(b.requests)
    for column in ("window", "probe_gbps", "idle_power_w", "energy_j", "decode_tok_per_j"):
        assert warm[column].notna().all(), column
    per_cell = warm.groupby(["transport", "prompt_tokens"]).size()
    assert per_cell.to_dict() == {(t, n): 5 for t in ("inprocess", "server") for n in (1024, 32000)}   # sweep's out
    summary = summarize(b.requests)
    cell = summary[(summary["phase"] == "warm") & (summary["transport"] == "server") & (summary["quant"] == "Q4_K_M")
                   & (summary["prompt_tokens"] == 1024)]
    assert cell["n_ok"].tolist() == [5]
    assert not summary[(summary["phase"] == "warm") & (summary["quant"] == "F16")].shape[0]   # F16: only swept
    serving = compare.serving(b)
    assert {1, 8, 64} <= set(serving["concurrency"]) and set(serving["quant"]) == {"F16", "Q4_K_M"}
    assert compare.host_cells(b)["of_ceiling"].between(0.001, 1.0).all()


def test_the_h100_frameworks_bundle_has_pytorch_to_100k_with_yarn_and_the_mlx_sweep(bundles):
    """PyTorch on CUDA to 100k prompt tokens with YaRN x4 (an H100 lease, 2026-12-07), NVML energy on every row; MLX's
    single-stream rows are failures with their reasons (README: the harness's thread bug in-process, since fixed, and
    mlx_lm.server out of GPU memory at 100k), mlx_lm.server's sweep with the current harness."""
    found = [b for b in bundles if b.host == LONG_HOST]
    assert found, f"results/{LONG_HOST}/ is missing or unreadable"
    b = found[0]
    assert "H100" in b.manifest["gpu"] and b.manifest["part"] == "frameworks-load"
    warm = single_stream(b.requests)
    torch = warm[warm["runtime"] == "torch"]
    assert (torch["status"] == "ok").all()
    assert torch.groupby("prompt_tokens").size().to_dict() == {1024: 5, 32000: 5, 65536: 3, 100000: 3}
    for column in ("window", "probe_gbps", "idle_power_w", "energy_j", "decode_tok_per_j"):
        assert torch[column].notna().all(), column
    assert all(json.loads(e)["rope_scaling"]["rope_type"] == "yarn" for e in torch["extra"])
    assert torch.groupby("prompt_tokens")["device_mem_bytes"].median().is_monotonic_increasing
    rows = b.requests
    failed = rows[(rows["runtime"] == "mlx") & (rows["workload"] == "unique") & (rows["status"] != "ok")]
    inprocess = failed[failed["transport"] == "inprocess"]["error"]
    assert len(inprocess) == 18 and inprocess.str.contains("no Stream").all()
    assert failed[failed["transport"] == "server"]["error"].str.contains("generation thread died").any()
    serving = compare.serving(b)
    assert sorted(serving["concurrency"]) == [1, 2, 4, 8, 16, 32, 64] and set(serving["quant"]) == {"4bit"}
    assert compare.host_cells(b)["of_ceiling"].between(0.001, 1.0).all()


def test_the_h100_mlx_bundle_has_both_transports_to_100k_and_chat_with_and_without_reuse(bundles):
    """MLX on CUDA (an H100 lease, 2026-12-07, after the thread fix): in-process and mlx_lm.server at 1k, 32k and
    100k prompt tokens with YaRN x4, 5-turn chats to 8k in-process with the KV cache kept and not, every request ok,
    NVML energy on every row; in-process device memory grows with the prompt."""
    found = [b for b in bundles if b.host == MLX_HOST]
    assert found, f"results/{MLX_HOST}/ is missing or unreadable"
    b = found[0]
    assert "H100" in b.manifest["gpu"] and b.manifest["part"] == "mlx"
    warm = single_stream(b.requests)
    assert set(warm["runtime"]) == {"mlx"} and (warm["status"] == "ok").all()
    unique = warm[warm["workload"] == "unique"]
    for (transport, quant), cell in unique.groupby(["transport", "quant"]):
        assert set(cell["prompt_tokens"]) == {1024, 32000, 100000}, (transport, quant)
    for column in ("window", "probe_gbps", "idle_power_w", "energy_j", "decode_tok_per_j"):
        assert warm[column].notna().all(), column
    assert all(json.loads(e)["rope_scaling"]["rope_type"] == "yarn" for e in warm["extra"])
    inprocess = unique[unique["transport"] == "inprocess"]
    assert inprocess.groupby("prompt_tokens")["device_mem_bytes"].median().is_monotonic_increasing
    chat = warm[warm["workload"] == "chat"]
    assert set(chat["transport"]) == {"inprocess"} and set(chat["cache_reuse"]) == {True, False}
    assert chat["prompt_tokens"].max() > 8000
    assert compare.host_cells(b)["of_ceiling"].between(0.001, 1.0).all()


def test_the_h100_quant_bundle_has_f16_q8_q4_on_llama_server_and_its_roofline_from_the_copy_check(bundles):
    """The Q8_0 cells the earlier-harness H200 bundle alone had, with the current harness (an H100 lease, 2026-12-07):
    llama-server on F16, Q8_0 and Q4_K_M and in-process on Q4_K_M at 1k and 32k, 5 requests a cell over 2 windows,
    energy on every row, none flagged by the GPU's batched matmul probe; the part skipped calibration, so its roofline
    is the copy check's 4 GiB probe (bundles.checked_bandwidth)."""
    b = bundle_of(bundles, QUANT_HOST)
    assert "H100" in b.manifest["gpu"] and b.manifest["part"] == "llamacpp-only"
    assert b.bandwidth == {"cuda": b.check["probe_cuda_gbps"]["4096MiB"]}
    warm = single_stream(b.requests)
    assert (warm["status"] == "ok").all() and not warm["drift_flag"].any()
    for column in ("window", "probe_gbps", "idle_power_w", "energy_j", "decode_tok_per_j"):
        assert warm[column].notna().all(), column
    per_cell = warm.groupby(["transport", "quant", "prompt_tokens"]).size().to_dict()
    cells = [("server", q) for q in ("F16", "Q8_0", "Q4_K_M")] + [("inprocess", "Q4_K_M")]
    assert per_cell == {(t, q, n): 5 for t, q in cells for n in (1024, 32000)}
    rows = compare.host_cells(b)
    assert rows["of_ceiling"].between(0.001, 1.0).all() and (rows["ceiling_kv_tps"] < rows["ceiling_tps"]).all()
    decode = rows[rows["transport"] == "server"].set_index(["quant", "prompt_tokens"])["decode_tps_p50"]
    assert decode["F16"].lt(decode["Q8_0"]).all()         # fewer weight bytes a token, faster decode
