# The two set-up commands of the README:  make demo  ·  make test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test services lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel 2>&1 | { grep -v "is neither a file nor a directory" || true; }
	$(BIN)/pip install -q -e '.[dev]' 2>&1 | { grep -v "is neither a file nor a directory" || true; }
	touch $(STAMP)

## The end-to-end demo on the bundled data; leaves the Prefect UI running on 127.0.0.1:4200.
demo: $(STAMP)
	$(BIN)/provenflow demo

## The test suite against real services (PostgreSQL, a Prefect server); installs PostgreSQL if missing.
test: $(STAMP) services
	$(BIN)/python -m pytest

services:
	@infra/install-test-services.sh

lint: $(STAMP)
	$(BIN)/ruff check provenflow flows tasks blocks tests bench

bench: $(STAMP)
	$(BIN)/python bench/tracking.py
	$(BIN)/python bench/datasets.py
	$(BIN)/python bench/overhead.py
