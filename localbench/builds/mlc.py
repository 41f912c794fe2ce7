"""MLC-LLM is not built here: it ships only on its own wheel index (PyPI's `mlc-llm-*` names are placeholders).
The one place that says how to install it and imports it, for its converter and its runtime."""
from __future__ import annotations

from localbench.core.types import RuntimeUnavailable

INSTALL_HINT = ("install MLC's own wheels on macOS: python -m pip install --pre -U -f https://mlc.ai/wheels "
                "mlc-llm-nightly-cpu mlc-ai-nightly-cpu (they are not on PyPI)")


def import_mlc():
    """The mlc_llm module, or RuntimeUnavailable saying it is not importable and how to install it."""
    try:
        import mlc_llm
    except ImportError as exc:
        raise RuntimeUnavailable(f"`mlc_llm` not importable ({exc}); {INSTALL_HINT}") from exc
    return mlc_llm
