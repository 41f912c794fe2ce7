# Two entry points: `make repro` (install, then `dvc repro` on the default profile) and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

OLLAMA := .cache/ollama/bin/ollama

.PHONY: install repro test bench

$(STAMP): requirements.in requirements.lock pyproject.toml localbench/builds/llamacpp.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.in -c requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m localbench.builds.llamacpp
	touch $(STAMP)

# Ollama from its Go module (localbench/builds/ollama.py pins the version); skipped with one line without Go
$(OLLAMA): localbench/builds/ollama.py | $(STAMP)
	$(PY) -m localbench.builds.ollama

install: $(STAMP) $(OLLAMA)

repro: install
	dvc repro

test: install
	$(PY) -m pytest -q -rs

bench: install
	$(PY) benchmarks/calibration_bench.py
