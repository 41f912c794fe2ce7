#!/usr/bin/env bash
# The lent GPU machine's half of benchmarks/gpu_run.py (see its docstring and the README): run from the
# repository root there, through the device tool, with .cache/gpu/ctl and .cache/gpu/carry1 (first call) or
# .cache/gpu/carry2 (second call) carried; any later call resumes where the last one stopped.
#   bash benchmarks/gpu_run.sh [BUDGET_S]     # seconds this call may use (default 540, under the 600 s limit)
set -u
export PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_run.py device --budget "${1:-540}" --out "${OUT:-/tmp/lbgpu/out}"
