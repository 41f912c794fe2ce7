"""Runtime modules, one per runtime. `registry()` imports them all and returns name -> Runtime class."""
import importlib

MODULES = ("torch_runtime", "llamacpp", "mlx", "ollama", "mlc", "endpoint", "reference")


def registry() -> dict:
    """Every runtime class by name (importing a module registers it; its libraries load lazily)."""
    from localbench.runtimes.base import REGISTRY
    for module in MODULES:
        importlib.import_module(f"localbench.runtimes.{module}")
    return REGISTRY
