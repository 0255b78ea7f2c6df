# `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Label Studio lives in its own venv: its pinned dependencies (Django among them) stay out of ours
LS_VENV := .venv-label-studio
LS_INSTALLED := $(LS_VENV)/.label-studio-1.23.2

.PHONY: demo test lint format bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required: make PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/flywheel demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(LS_INSTALLED): | $(INSTALLED)
	$(BIN)/python tests/labeling/label_studio_server.py --install

# the tests start (and stop) the real services they need: Label Studio, a Dask cluster
test: lint $(LS_INSTALLED)
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) lake .pytest_cache
