# TimeGlass developer entry points. CI runs `.ci/run`, which is `make test`.
#
#   make build   .venv with the dev tools, the `timeglass` CLI and the marker wheel
#   make test    Rust tests, clippy, fmt, ruff, mypy, marker tests, end-to-end tests
#   make demo    profile the fixture app for a few seconds and show what was recorded
#   make bench   wrk against bare uvicorn, marker only, and full `timeglass run`;
#                dashboard speed over a synthetic 100,000-request store
#   make fmt     format Rust and Python in place
#   make clean   remove .venv, build stamps and wheels (not target/ caches)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps
WHEELS := target/wheels

# CI must build exactly what Cargo.lock says; locally, let cargo update it.
LOCKED := $(if $(CI),--locked,)

# pyo3's build script must see the same interpreter for maturin, cargo test and
# clippy, or each switch rebuilds pyo3.
export PYO3_PYTHON := $(abspath $(VENV_PY))

# What the marker wheel is built from: the marker crate, its Python package and
# the wire crate it links. Tests and benches are not in the wheel.
MARKER_INPUTS := Cargo.toml Cargo.lock $(shell find marker wire \
	\( -name tests -o -name bench -o -name benches -o -name __pycache__ -o -name target \) -prune \
	-o -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.py' -o -name '*.pyi' -o -name py.typed \) \
	-print 2>/dev/null)

# ruff reads everything Python; mypy (config in pyproject.toml) the typed code.
PY_LINT := marker fixtures tests bench build_backend
PY_TYPED := marker/python fixtures tests bench build_backend

.PHONY: help
help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

# --- build -------------------------------------------------------------------

.PHONY: build
build: venv cli marker browser

# The dashboard's browser tests drive Debian's chromium (never a browser that
# Playwright downloads).
.PHONY: browser
browser:
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

.PHONY: venv
venv: $(STAMPS)/requirements

$(STAMPS)/requirements: requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
		|| { echo "error: Python 3.10+ is needed (\`$(PYTHON)\` is older); try \`make PYTHON=python3.11\`" >&2; exit 1; }
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -r requirements-dev.txt
	@mkdir -p $(STAMPS) && touch $@

# Cargo knows best whether the CLI is stale, so always ask it; copy only on change.
.PHONY: cli
cli: venv
	cargo build --release -p timeglass-cli $(LOCKED)
	@cmp -s target/release/timeglass $(VENV)/bin/timeglass \
		|| install -m 0755 target/release/timeglass $(VENV)/bin/timeglass

.PHONY: marker
marker: $(STAMPS)/marker

$(STAMPS)/marker: $(STAMPS)/requirements $(MARKER_INPUTS)
	rm -f $(WHEELS)/*.whl
	$(VENV)/bin/maturin build --release -m marker/Cargo.toml -o $(WHEELS) $(LOCKED)
	$(VENV_PY) -m pip install --quiet --force-reinstall --no-deps $(WHEELS)/*.whl
	@touch $@

# --- checks ------------------------------------------------------------------

.PHONY: test
test: lint-rust test-rust lint-python test-python

.PHONY: lint-rust
lint-rust: venv
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets $(LOCKED) -- -D warnings

.PHONY: test-rust
test-rust: venv
	cargo test --workspace $(LOCKED)

.PHONY: lint-python
lint-python: venv
	$(VENV)/bin/ruff check $(PY_LINT)
	$(VENV)/bin/ruff format --check $(PY_LINT)
	$(VENV)/bin/mypy $(PY_TYPED)

# Two pytest runs: marker/tests and tests/ each have their own conftest.py.
.PHONY: test-python
test-python: build
	@if [ -d marker/tests ]; then $(VENV_PY) -m pytest marker/tests; \
		else echo "marker/tests does not exist yet: skipped"; fi
	$(VENV_PY) -m pytest tests

.PHONY: fmt
fmt: venv
	cargo fmt --all
	$(VENV)/bin/ruff check --fix $(PY_LINT)
	$(VENV)/bin/ruff format $(PY_LINT)

# --- show and measure --------------------------------------------------------

.PHONY: demo
demo: build
	@$(VENV_PY) -m fixtures.demo

.PHONY: bench
bench: build
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	$(VENV_PY) -m bench.run $(BENCH_ARGS)

.PHONY: clean
clean:
	rm -rf $(VENV) $(WHEELS)
