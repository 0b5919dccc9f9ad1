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

# Cross compilers and emulators of every target proof (Debian packages; see the script).
toolchain:
	@./scripts/install_toolchain.sh all

# The demo runs on the host and on an emulated Cortex-M0: it installs the ARM toolchain like
# `make test` does; where that is impossible it still runs the host phases and says in one
# line what it skipped.
demo: $(STAMP)
	@./scripts/install_toolchain.sh arm || true
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
