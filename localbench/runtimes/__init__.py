"""Runtime modules, one per runtime; importing this package registers every one of them."""
import importlib

from localbench.runtimes.base import REGISTRY

MODULES = ("torch_runtime", "llamacpp", "mlx", "ollama", "mlc", "endpoint", "reference")

for _module in MODULES:
    try:
        importlib.import_module(f"localbench.runtimes.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"localbench.runtimes.{_module}":
            raise

__all__ = ["REGISTRY", "MODULES"]
