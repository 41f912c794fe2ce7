"""Layer 5: running requests: prompts, plan, executor, measurement windows, load generator, result store,
drift and memory probes, environment, calibration."""
