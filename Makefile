# The two set-up commands of the README:  make demo  ·  make test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test services lint bench

# pip prints a line per package (and a bar per download): the first install takes a few minutes.
$(STAMP): pyproject.toml setup.py
	@echo "[1/3] creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "[2/3] upgrading pip"
	$(BIN)/pip install -q -U pip setuptools wheel 2>&1 | { grep -v "is neither a file nor a directory" || true; }
	@echo "[3/3] installing provenflow and its dependencies (~1.4 GB: Prefect, scikit-learn, evidently, …);"
	@echo "      about 90 s on 2 cores. After the 'Collecting …' lines pip prints nothing for a minute or so"
	@echo "      while it unpacks everything into $(VENV)/ (the 'Installing collected packages' step): that is normal."
	$(BIN)/pip install -e '.[dev]' 2>&1 | { grep -v "is neither a file nor a directory\|already satisfied" || true; }
	touch $(STAMP)

## The end-to-end demo on the bundled data; leaves the project's Prefect server, its deployments and a
## worker running (the URL is printed; `.venv/bin/provenflow down` stops them).
demo: $(STAMP)
	$(BIN)/provenflow demo

## The test suite against real services; installs what is missing (PostgreSQL, Docker, Go, govmomi) and
## builds the vCenter simulator first.
test: $(STAMP) services
	$(BIN)/python -m pytest

services:
	@infra/install-test-services.sh

lint: $(STAMP)
	$(BIN)/ruff check provenflow flows tasks blocks tests bench

## Every benchmark in short mode, then bench/.work/summary.json (each figure, its target, met or not).
## `make bench BENCH_ARGS=--full` for the full sizes; see bench/README.md.
bench: $(STAMP)
	$(BIN)/python bench/all.py $(BENCH_ARGS)
