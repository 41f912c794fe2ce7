"""Layer 0: the vocabulary every other layer speaks: request/chunk/usage/artifact types, per-request metrics,
the row schema, hardware facts, statistics and Markdown helpers. Imports nothing else of localbench."""
