# `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Label Studio lives in its own venv: its pinned dependencies (Django among them) stay out of ours
LS_VENV := .venv-label-studio
LS_INSTALLED := $(LS_VENV)/.label-studio-1.23.2
# Debian's Chromium: the report test renders the HTML dashboard in it, headless
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

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

$(CHROMIUM):
	$(APT) install -y --no-install-recommends chromium || \
		($(APT) update && $(APT) install -y --no-install-recommends chromium)

# the tests start (and stop) the real services they need: Label Studio, a Dask cluster,
# headless Chromium
test: lint $(LS_INSTALLED) $(CHROMIUM)
	FLYWHEEL_REQUIRE_BROWSER=1 $(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) lake .pytest_cache
