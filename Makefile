# vlmrl-trl: every target installs what it needs into .venv first (once; the stamp makes it a no-op).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint format

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check vlmrl_trl tests benchmarks examples
	$(PY) -m ruff format --check vlmrl_trl tests benchmarks examples

format: $(STAMP)
	$(PY) -m ruff check --fix vlmrl_trl tests benchmarks examples
	$(PY) -m ruff format vlmrl_trl tests benchmarks examples
