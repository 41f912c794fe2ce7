# Two entry points: `make repro` (install, then `dvc repro` on the default profile) and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

OLLAMA := .cache/ollama/bin/ollama

.PHONY: install repro test bench chromium

$(STAMP): requirements.in requirements.lock pyproject.toml localbench/builds/llamacpp.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.in -c requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m localbench.builds.llamacpp
	touch $(STAMP)

# Ollama from its Go module (localbench/builds/ollama.py pins the version); skipped with one line without Go
$(OLLAMA): localbench/builds/ollama.py | $(STAMP)
	$(PY) -m localbench.builds.ollama

# Debian's chromium for the page's browser test (tests/test_e2e.py), where apt-get can install it (root); without
# it that test is skipped with the reason
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not installed (needs root and apt-get): the page's browser test will be skipped"

install: $(STAMP) $(OLLAMA) chromium

repro: install
	dvc repro

test: install
	$(PY) -m pytest -q -rs

bench: install
	$(PY) benchmarks/calibration_bench.py
