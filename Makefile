# `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# the lock: exact versions of every package the suite passed on (`make lock` moves them), and
# of the bench extra's peers that bench/peers.py ran on (docs/performance.md)
LOCK := constraints.txt
PIP_INSTALL := $(BIN)/python -m pip install --quiet -c $(LOCK)
# the demo needs the runtime dependencies only; the tests add the test extras
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.installed-test
# Label Studio lives in its own venv: its pinned dependencies (Django among them) stay out of ours
LS_VENV := .venv-label-studio
LS_INSTALLED := $(LS_VENV)/.label-studio-1.23.2
# Debian's Chromium: the report test renders the HTML dashboard in it, headless
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: demo test lint format docs bench bench-peers fuzz clean lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required: make PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(TEST_INSTALLED): $(INSTALLED)
	$(PIP_INSTALL) -e '.[test,s3]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/flywheel demo

lint: $(TEST_INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# docs/cli.md from every command's --help (tests/flywheel/test_cli_docs.py checks it is current)
docs: $(INSTALLED)
	$(BIN)/python -m cli.docs

$(LS_INSTALLED): | $(TEST_INSTALLED)
	$(BIN)/python tests/labeling/label_studio_server.py --install

$(CHROMIUM):
	$(APT) install -y --no-install-recommends chromium || \
		($(APT) update && $(APT) install -y --no-install-recommends chromium)

# the tests start (and stop) the real services they need: Label Studio, a Dask cluster,
# headless Chromium; mypy checks the core and the public APIs first ([tool.mypy])
test: lint $(LS_INSTALLED) $(CHROMIUM)
	$(BIN)/mypy
	FLYWHEEL_REQUIRE_BROWSER=1 $(BIN)/python -m pytest --durations=15

bench: $(INSTALLED)
	$(BIN)/python bench/ingest.py

# Flywheel's search beside FAISS, hnswlib, usearch, LanceDB and Qdrant (the bench extra) at 1M
# scenes (docs/performance.md); numpy is measured with OPENBLAS_CORETYPE unset
bench-peers: $(INSTALLED)
	$(PIP_INSTALL) -e '.[bench]'
	env -u OPENBLAS_CORETYPE $(BIN)/python bench/peers.py

# the long fuzz run (nightly): random mutations of small valid MCAP, bag and db3 files
fuzz: $(TEST_INSTALLED)
	FLYWHEEL_FUZZ_EXAMPLES=$${FLYWHEEL_FUZZ_EXAMPLES:-2000} $(BIN)/python -m pytest tests/ingest/test_fuzz.py

# Move the pins on purpose: resolve the newest versions pyproject.toml allows in a scratch venv
# and write them to the lock; then `make test` proves the suite on them before a commit.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[test,s3,bench]'
	( echo "# The lock: the versions \`make test\` passed on. Regenerate with \`make lock\`."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | LC_ALL=C sort -f ) > $(LOCK)
	rm -rf .venv-lock
	@echo "$(LOCK) updated: run make test, then commit it"

clean:
	rm -rf $(VENV) lake .pytest_cache
