"""Layer 1: params.yaml (composed from conf/ by Hydra) read into typed settings, the schema, privacy."""
