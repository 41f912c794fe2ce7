"""localbench: a reproducible benchmark of local LLM inference runtimes (see DESIGN.md)."""
