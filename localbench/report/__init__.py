"""Layer 8: the report: one module per section, figures, writers (Markdown, HTML)."""
