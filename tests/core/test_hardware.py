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
