"""llama.cpp on the real tiny model: GGUF convert + quantize, token-id parity, both transports, failures."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from fakes import artifact_of

from localbench.artifacts.converters import gguf
from localbench.builds import llamacpp as llamacpp_build
from localbench.builds.llamacpp import buffer_sizes
from localbench.core.schema import ARTIFACT_FIELDS
from localbench.core.types import Chunk, Request, Sent, Usage
from localbench.measure.executor import run_request
from localbench.runtimes.llamacpp import LlamaCppRuntime
from localbench.transport.servers import ServerDied

needs_build = pytest.mark.skipif(bool(llamacpp_build.missing()), reason=f"llama.cpp not built: {llamacpp_build.missing()}")
SETTINGS = {"n_threads": 2, "n_ctx": 512, "n_batch": 512, "bench_repetitions": 1}
TEXTS = ["Hello world! How are you today?",
         "def fib(n):\n\tif n < 2:\n\t\treturn n\n    return fib(n - 1) + fib(n - 2)  # café ≠ 42 🚀",
         "<|im_start|>user\nWrite a haiku.<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="session")
def ggufs(tiny_hf_dir, tmp_path_factory):
    """F16 and Q8_0 GGUFs of the tiny model, converted once per session."""
    out = tmp_path_factory.mktemp("gguf")
    f16 = gguf.convert(tiny_hf_dir, out / "F16.gguf", "smollm2", "F16", {})
    q8 = gguf.convert(tiny_hf_dir, out / "Q8_0.gguf", "smollm2", "Q8_0", {"base_f16": f16["path"]})
    return {"F16": f16, "Q8_0": q8}


@needs_build
def test_convert_and_quantize_rows(ggufs):
    f16, q8 = ggufs["F16"], ggufs["Q8_0"]
    assert set(f16) == {name for name, _ in ARTIFACT_FIELDS}
    assert f16["size_bytes"] == os.path.getsize(f16["path"]) and f16["convert_s"] > 0
    assert 15.9 < f16["bits_per_weight"] < 16.5      # F16 (a few small F32 norms on top)
    assert 8.4 < q8["bits_per_weight"] < 9.0          # Q8_0: 34 bytes per 32 weights
    assert q8["status"] == "ok" and "llama-quantize Q8_0" in q8["tool"]


@needs_build
def test_gguf_token_ids_equal_hf_ids(ggufs, tiny_tokenizer):
    import llama_cpp

    llm = llama_cpp.Llama(ggufs["Q8_0"]["path"], vocab_only=True, verbose=False)
    for text in TEXTS:
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == \
            tiny_tokenizer.encode(text, add_special_tokens=False), text


@needs_build
def test_unknown_tokenizer_is_one_clear_error(tiny_hf_dir, tmp_path):
    hf = tmp_path / "hf"
    shutil.copytree(tiny_hf_dir, hf)
    tok = json.loads((hf / "tokenizer.json").read_text())
    tok["normalizer"] = {"type": "Lowercase"}     # changes the pre-tokenizer hash the converter checks
    (hf / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ValueError, match="does not recognise the tokenizer"):
        gguf.convert(hf, tmp_path / "x.gguf", "m", "F16", {})


@needs_build
def test_inprocess_stream_forced_length_and_cache_reset(ggufs, tiny_tokenizer):
    session = LlamaCppRuntime(SETTINGS).load(artifact_of(ggufs["Q8_0"]), "inprocess")
    try:
        ids = tuple(tiny_tokenizer.encode(TEXTS[1]))
        items = list(session.stream(Request("p", ids, TEXTS[1], max_tokens=8)))
        usage = items[-1]
        assert isinstance(usage, Usage) and all(isinstance(i, Chunk) for i in items[:-1]) and len(items) > 1
        assert usage.output_tokens == 8 and usage.prompt_tokens == len(ids)
        again = list(session.stream(Request("p", ids, TEXTS[1], max_tokens=8)))[-1]
        assert again.extra["prompt_cached"] == 0          # KV cache dropped between requests
        reused = list(session.stream(Request("p", ids, TEXTS[1], max_tokens=8, reuse_cache=True)))[-1]
        assert reused.extra["prompt_cached"] > 0 and reused.output_tokens == 8
        mem = session.memory()
        assert mem["kv_buffer_bytes"] > 0 and mem["model_buffer_bytes"] > 0 and mem["device_mem_bytes"] > 0
    finally:
        session.close()


@needs_build
def test_server_stream_and_death(ggufs, tiny_tokenizer, tmp_path):
    session = LlamaCppRuntime({**SETTINGS, "log_dir": str(tmp_path)}).load(artifact_of(ggufs["Q8_0"]), "server")
    try:
        assert session.memory()["kv_buffer_bytes"] > 0
        ids = tuple(tiny_tokenizer.encode(TEXTS[0]))
        fields = run_request(session, Request("p", ids, TEXTS[0], max_tokens=8), timeout_s=60)
        assert fields["status"] == "ok" and fields["output_tokens"] == 8 and fields["ttft_s"] > 0
        chat = Request("c", ids, TEXTS[0], max_tokens=5, chat=True, messages=({"role": "user", "content": "Hi"},))
        assert run_request(session, chat, timeout_s=60)["output_tokens"] == 5
        stream = session.stream(Request("p", ids, TEXTS[0], max_tokens=400))
        assert isinstance(next(stream), Sent) and isinstance(next(stream), Chunk)
        os.kill(session.pid, signal.SIGKILL)                # the server dies mid-request
        with pytest.raises(ServerDied, match="llama-server exited"):
            list(stream)
        after = run_request(session, Request("p", ids, TEXTS[0], max_tokens=8), timeout_s=60)
        assert after["status"] == "error" and "llama-server exited" in after["error"]
    finally:
        session.close()


@needs_build
def test_llama_bench_fidelity_row(ggufs, tmp_path):
    rows = LlamaCppRuntime(SETTINGS).window_references(
        artifact_of(ggufs["Q8_0"]), [Request("p", tuple(range(1, 17)), "", max_tokens=4),
                                  Request("c", tuple(range(1, 9)), "", max_tokens=4, reuse_cache=True)])
    (row,) = rows
    assert row["kind"] == "llama-bench fidelity" and "flag" not in row
    assert row["bench_prefill_tps"] > 0 and row["bench_decode_tps"] > 0
    assert (row["prompt_tokens"], row["n_gen"], row["threads"], row["quant"]) == (16, 4, 2, "Q8_0")


def test_missing_build_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(llamacpp_build, "CACHE_DIR", tmp_path)
    for call in (lambda: llamacpp_build.tool("llama-server"), llamacpp_build.gguf_converter,
                 lambda: gguf.convert(tmp_path, tmp_path / "x.gguf", "m", "Q4_K_M", {"base_f16": "f.gguf"})):
        with pytest.raises(llamacpp_build.LlamaCppMissing) as err:
            call()
        assert "python -m localbench.builds.llamacpp" in str(err.value) and "\n" not in str(err.value)
    probe = LlamaCppRuntime({}).probe()
    assert not probe.available and "python -m localbench.builds.llamacpp" in probe.reason


def test_buffer_sizes_from_log():
    log = ("load_tensors:   CPU_Mapped model buffer size =   100.00 MiB\n"
           "llama_kv_cache:        CPU KV buffer size =    45.00 MiB\n"
           "sched_reserve:        CPU compute buffer size =    15.50 MiB\n")
    sizes = buffer_sizes(log)
    assert sizes["model_buffer_bytes"] == 100 * 2**20 and sizes["kv_buffer_bytes"] == 45 * 2**20
    assert sizes["device_mem_bytes"] == int(160.5 * 2**20)


def test_cuda_builds_link_the_shared_cuda_runtime_and_export_no_static_archive(monkeypatch):
    """The in-process crash on CUDA: libggml-cuda.so exported a static copy of libstdc++ (README, the in-process
    check); a CUDA build must keep both flags that prevent it, a CPU build gets neither."""
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90")
    assert set(llamacpp_build.CUDA_FIX) <= set(llamacpp_build.cmake_args())
    assert "-DCMAKE_SHARED_LINKER_FLAGS=-Xlinker --exclude-libs=ALL" in llamacpp_build.cmake_args()
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA:BOOL=1")
    assert set(llamacpp_build.CUDA_FIX) <= set(llamacpp_build.cmake_args())
    for cpu in ("", "-DGGML_CUDA=off"):
        monkeypatch.setenv("CMAKE_ARGS", cpu)
        assert not set(llamacpp_build.CUDA_FIX) & set(llamacpp_build.cmake_args())


STATIC_CXX = subprocess.run(["g++", "-print-file-name=libstdc++.a"], capture_output=True, text=True).stdout.strip() \
    if shutil.which("g++") else ""


@pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("nm") and os.path.isabs(STATIC_CXX)),
                    reason="needs cmake, nm and g++ with libstdc++.a (the static C++ runtime)")
def test_the_cuda_fix_linker_flag_keeps_a_static_cxx_runtime_to_itself(tmp_path):
    """CUDA_FIX's linker flag on the H200's symptom, rebuilt with the host toolchain: a shared library that carries a
    static libstdc++ (-static-libstdc++ here; nvcc 13's link there) exports it, and libstdc++.so and pyarrow then bind
    to that copy (LD_DEBUG); linked through CMake with the flag, it exports none of it and nothing binds to it."""
    (tmp_path / "k.cpp").write_text('#include <sstream>\nextern "C" int describe(int n) '
                                    '{ std::ostringstream s; s << n; return (int)s.str().size(); }\n')
    (tmp_path / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.18)\nproject(k LANGUAGES CXX)\n"
                                             "add_library(k SHARED k.cpp)\n")
    fix = next(a.split("=", 1)[1] for a in llamacpp_build.CUDA_FIX if a.startswith("-DCMAKE_SHARED_LINKER_FLAGS="))
    seen = {}
    for name, flags in (("plain", "-static-libstdc++"), ("fixed", f"-static-libstdc++ {fix}")):
        build = tmp_path / name
        subprocess.run(["cmake", "-S", tmp_path, "-B", build, f"-DCMAKE_SHARED_LINKER_FLAGS={flags}"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run(["cmake", "--build", build], check=True, capture_output=True, timeout=120)
        lib = str(build / "libk.so")
        symbols = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout
        std = [line for line in symbols.splitlines() if line.split()[-1].startswith(("_ZNSt", "_ZSt"))]
        code = f"import ctypes; ctypes.CDLL({lib!r}, mode=ctypes.RTLD_GLOBAL); import pyarrow.compute"
        log = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LD_DEBUG": "bindings"},
                             capture_output=True, text=True, timeout=120).stderr
        into = [line for line in log.splitlines() if f"to {lib} " in line and f"binding file {lib} " not in line]
        seen[name] = (len(std), len(into))
    assert seen["plain"][0] > 100 and seen["plain"][1] > 100, seen        # the symptom, reproduced
    assert seen["fixed"] == (0, 0), seen
