# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench toolchain clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Cross compiler and emulator for the Cortex-M0 proofs (Debian packages).
toolchain:
	@./scripts/install_toolchain.sh

demo: $(STAMP)
	$(BIN)/python -m intquant.demo

test: $(STAMP) toolchain
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q

test-all: $(STAMP) toolchain
	$(BIN)/python -m pytest -n 2 -q -m ''

bench: $(STAMP) toolchain
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache build
