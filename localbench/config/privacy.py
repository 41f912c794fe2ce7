"""Nothing leaves the machine: the environment every stage runs with (set when localbench.config.params is imported).

Telemetry of the libraries the pipeline drives is switched off, and Hugging Face libraries are kept offline
(HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE), except in the download stage of a `model.source: hf` profile, the
one step that fetches by design. A value the user set already is kept.
"""
from __future__ import annotations

import os

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",                    # the cross-tool convention (consoledonottrack.com)
    "HF_HUB_DISABLE_TELEMETRY": "1",        # huggingface_hub / transformers usage pings
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",   # never send a stored token unasked
    "DVC_NO_ANALYTICS": "1",                # DVC's anonymous usage analytics (also core.analytics=false)
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
}
HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

_set_here: set[str] = set()


def apply() -> None:
    """Telemetry off and the Hub offline, for this process and every process it starts."""
    for name, value in {**TELEMETRY_OFF, **HUB_OFFLINE}.items():
        if name not in os.environ:
            os.environ[name] = value
            _set_here.add(name)


def allow_hub() -> None:
    """Let this process reach the Hugging Face Hub (the download stage of an `hf` model) unless the user
    made it offline themselves; call before huggingface_hub is imported."""
    for name in HUB_OFFLINE:
        if name in _set_here:
            os.environ.pop(name, None)
            _set_here.discard(name)
