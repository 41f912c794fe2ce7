"""Hardware facts, each defined once: the bandwidth probe, which memory a device reads, KV bytes per token."""
import math

from localbench.core.hardware import kv_bytes_per_token, memory_of, read_bandwidth


def test_read_bandwidth_is_measured():
    assert 1e8 < read_bandwidth("cpu", size_mib=16, repeats=2) < 1e13
    devices = ("cpu", "cuda:0", "mps", "Device(gpu, 0)")
    assert [memory_of(d, {"cpu": 1, "mps": 1}) for d in devices] == ["cpu", "cuda", "mps", "mps"]
    assert memory_of("Device(gpu, 0)", {"cpu": 1, "cuda": 1}) == "cuda" and memory_of("") is None


def test_kv_bytes_per_token_defaults_kv_heads_and_says_nan_when_unknown():
    mha = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 256}        # no KV heads: MHA
    assert kv_bytes_per_token(mha, 2) == 2 * 4 * 64 * 2 * 2
    assert math.isnan(kv_bytes_per_token({}, 2))


def test_speed_probe_reads_the_processor_the_weights_are_on(monkeypatch):
    """A runtime on CUDA is judged by the GPU's speed (the host CPU's matmul swings 180-370 GFLOP/s on a GPU host
    while the GPU does the work: it flagged 149 of 173 H100 rows); any other memory by the CPU probes."""
    from localbench.core import hardware

    gbps, gflops = hardware.speed_probe("cpu", size_mib=16, repeats=2)
    assert gbps > 0 and gflops > 0
    calls = []
    monkeypatch.setattr(hardware, "read_bandwidth", lambda d, mib, rep: calls.append(("read", d, mib)) or 3e12)
    monkeypatch.setattr(hardware, "cuda_compute_probe", lambda: calls.append(("matmul",)) or 7e5)
    assert hardware.speed_probe("cuda", size_mib=64, repeats=3) == (3000.0, 7e5)
    assert calls == [("read", "cuda", 64), ("matmul",)]
