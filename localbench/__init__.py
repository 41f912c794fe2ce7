"""localbench: a reproducible benchmark of local LLM inference runtimes (see DESIGN.md)."""

from localbench.config import privacy as _privacy

_privacy.apply()     # telemetry off, Hugging Face offline: before any library the package drives is imported
