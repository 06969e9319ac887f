# fuseflow: `make run` sets up and runs the default pipeline; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test clean-results

setup: $(STAMP)

# torch first, as the CPU wheel: a plain `torch` requirement resolved later would pull a CUDA build of several GB.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/fuseflow run digits-mlp

test: setup
	$(BIN)/python -m pytest

clean-results:
	rm -rf .fuseflow mlruns
