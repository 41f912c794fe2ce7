"""Layer 4: model sources, converters (HF dtypes, GGUF, MLX, MLC), the artifact catalog and integrity."""
