"""Converters, one module per format: `convert(hf_dir, out_path, model, quant, settings) -> artifact row`."""
import importlib

FORMATS = ("hf", "gguf", "mlx", "mlc")


def converter(fmt: str):
    """The convert() function of a format's module."""
    if fmt not in FORMATS:
        raise KeyError(f"unknown artifact format {fmt!r}; known: {FORMATS}")
    return importlib.import_module(f"localbench.artifacts.converters.{fmt}").convert
