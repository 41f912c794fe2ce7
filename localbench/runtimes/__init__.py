"""Runtime modules, one per runtime (named in localbench.config.registry). Importing a module registers its
Runtime class; its libraries load lazily."""
import importlib

from localbench.config.registry import RUNTIMES
from localbench.runtimes.base import REGISTRY, Runtime


def runtime_class(name: str) -> type[Runtime]:
    """The Runtime class of one runtime, importing only its module."""
    if name not in RUNTIMES:
        raise KeyError(f"unknown runtime {name!r}; known: {sorted(RUNTIMES)}")
    importlib.import_module(f"localbench.runtimes.{RUNTIMES[name].module}")
    return REGISTRY[name]


def registry() -> dict[str, type[Runtime]]:
    """Every runtime class by name."""
    return {name: runtime_class(name) for name in RUNTIMES}
