"""The GGUF recipes' names (plain, importance-matrix `-imat`, Ollama's quantizer `-ollama`): parsed once, listed by
the catalog, classed by precision like their plain type, and the calibration text kept apart from the scored one."""
import pytest
import yaml

from localbench.analysis.cells import precision
from localbench.artifacts.catalog import configured
from localbench.artifacts.converters.gguf import recipe
from localbench.artifacts.ollama_quantize import compare_ggufs
from localbench.config.schema import validate
from stage_project import ROOT


@pytest.mark.parametrize("quant, parsed, bits", [
    ("Q4_K_M", ("Q4_K_M", ""), "4-bit"), ("IQ4_XS-imat", ("IQ4_XS", "-imat"), "4-bit"),
    ("Q3_K_M-imat", ("Q3_K_M", "-imat"), "3-bit"), ("IQ3_XXS-imat", ("IQ3_XXS", "-imat"), "3-bit"),
    ("Q4_K_M-ollama", ("Q4_K_M", "-ollama"), "4-bit"), ("Q8_0-ollama", ("Q8_0", "-ollama"), "8-bit")])
def test_recipe_names_parse_and_keep_their_precision_class(quant, parsed, bits):
    assert recipe(quant) == parsed
    assert precision(quant) == bits       # matched cells compare a calibrated 4-bit file with other 4-bit ones


def test_mlx_learned_quant_names_are_listed_parsed_and_classed():
    from localbench.artifacts.converters.mlx import learned_recipe

    assert configured({"mlx": {"quants": ["4bit"], "learned_quants": ["dynamic_4_6", "awq_4"]}}) == {
        ("mlx", "4bit"), ("mlx", "dynamic_4_6"), ("mlx", "awq_4")}
    assert learned_recipe("dynamic_4_6") == ("dynamic", 4, 6) and precision("dynamic_4_6") == "mixed"
    for method in ("awq", "gptq", "dwq"):     # uniform-bit layers: compared with other 4-bit files
        assert learned_recipe(f"{method}_4") == (method, 4, None) and precision(f"{method}_4") == "4-bit"
    for bad in ("dynamic_6_4", "dynamic_4", "dynamic_4_7", "gptq_3", "dwq_8", "awq_4_6", "rtn_4"):
        with pytest.raises(ValueError, match="use dynamic_<low>_<high>"):
            learned_recipe(bad)


def test_catalog_lists_the_calibrated_and_ollama_artifacts():
    pairs = configured({"gguf": {"quants": ["Q4_K_M"], "imatrix_quants": ["IQ4_XS"], "ollama_quants": ["Q4_K_M"]}})
    assert pairs == {("gguf", "F16"), ("gguf", "Q4_K_M"), ("gguf", "IQ4_XS-imat"), ("gguf", "Q4_K_M-ollama")}


def test_calibration_text_must_not_overlap_the_scored_text():
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert validate(cfg) is None
    cfg["convert"]["calibration_text"].append(cfg["quality"]["text"][0])
    error = validate(cfg)
    assert error and "convert.calibration_text shares stdlib textwrap.py with quality.text" in error


def test_compare_says_byte_identical_or_how_tensors_differ(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    def write(name, second):
        w = gguf.GGUFWriter(str(tmp_path / name), "llama")
        w.add_tensor("a", np.arange(8, dtype=np.float32))
        w.add_tensor("b", second)
        w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file()
        w.close()
        return tmp_path / name

    one = write("one.gguf", np.ones(8, dtype=np.float32))
    assert compare_ggufs(one, write("same.gguf", np.ones(8, dtype=np.float32))) == "byte-identical"
    assert compare_ggufs(one, write("other.gguf", np.zeros(8, dtype=np.float32))) == \
        "files differ; of 2 shared tensors 2 have the same type, 1 identical data"
    assert compare_ggufs(one, write("f16.gguf", np.ones(8, dtype=np.float16))) == \
        "files differ; of 2 shared tensors 1 have the same type (others: F32/F16), 1 identical data"
