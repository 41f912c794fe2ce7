"""Layer 6: quantization quality: the evaluation text, logits files, forward backends, evaluation, frontier."""
