# TimeGlass developer entry points. CI runs `.ci/run`, which is `make test`.
#
#   make build   .venv with the dev tools, the `timeglass` CLI and the marker wheel
#   make test    Rust tests, clippy, fmt, ruff, mypy, marker tests, end-to-end tests on
#                .venv's CPython, then the core end-to-end subset on each other CPython
#   make test-core-X.Y   the core subset with the apps on CPython X.Y only (e.g. 3.12)
#   make matrix  the app environments .venv-3.10, .venv-3.12, .venv-3.13
#   make demo    profile the fixture app for a few seconds and show what was recorded
#   make bench   wrk against bare uvicorn, marker only, and full `timeglass run`;
#                dashboard speed over a synthetic 100,000-request store
#   make fmt     format Rust and Python in place
#   make clean   remove .venv, the app environments, build stamps and wheels (not target/ caches)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps
# The marker's own wheel, apart from target/wheels, where maturin also leaves the
# full `timeglass` wheel of a `pip install .` (tests/test_install.py): an app
# environment installs exactly one wheel from here.
WHEELS := target/marker-wheel

# --- the interpreter matrix ----------------------------------------------------
# Every CPython that users run is tested: pyenv's 3.10, 3.11, 3.12 and 3.13 (CI and the
# developers' machines have them). .venv runs on one of them ($(PYTHON), 3.11 here)
# and runs the whole suite; each other one gets an app environment .venv-X.Y with
# requirements-apps.txt and the marker wheel, and the tests marked `core` run once per
# version with their apps on it (pytest itself stays on .venv; the switch is
# TIMEGLASS_TEST_PYTHON, read by fixtures/harness.py). Under CI a version that is
# missing fails the run; locally it is reported and left out.
PYTHON_VERSIONS := 3.10 3.11 3.12 3.13
PYENV_ROOT ?= $(or $(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)
# pyenv's newest CPython X.Y.Z for X.Y (no -dev or free-threaded builds), or nothing.
pyenv_python = $(shell ls -d $(PYENV_ROOT)/versions/$(1).*/bin/python3 2>/dev/null \
	| grep -E '/versions/$(subst .,\.,$(1))\.[0-9]+/bin/' | sort -V | tail -n 1)
FOUND_PYTHONS := $(foreach v,$(PYTHON_VERSIONS),$(if $(call pyenv_python,$(v)),$(v)))
MISSING_PYTHONS := $(filter-out $(FOUND_PYTHONS),$(PYTHON_VERSIONS))
# The version .venv is (or will be) built with; the others are the matrix.
MAIN_VERSION := $(shell $(if $(wildcard $(VENV_PY)),$(VENV_PY),$(PYTHON)) -c \
	'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
MATRIX := $(filter-out $(MAIN_VERSION),$(FOUND_PYTHONS))
# The interpreter whose environment serves the apps of CPython X.Y.
app_python = $(abspath $(if $(filter $(1),$(MAIN_VERSION)),$(VENV),.venv-$(1))/bin/python)
empty :=
space := $(empty) $(empty)
# The Rust live walker tests run against each of these interpreters.
TIMEGLASS_PYTHONS ?= $(subst $(space),:,$(strip $(foreach v,$(PYTHON_VERSIONS),$(call pyenv_python,$(v)))))

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
build: venv cli marker browser js

# The published schemas the export tests check against (speedscope's JSON
# schema, pprof's profile.proto as generated JavaScript), from npm with
# install scripts off: nothing in them is built or run but that code.
.PHONY: js
js: tests/js/node_modules/.stamp

tests/js/node_modules/.stamp: tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null || { apt-get update && apt-get install -y npm; }
	cd tests/js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# The dashboard's browser tests drive Debian's chromium (never a browser that
# Playwright downloads).
.PHONY: browser
browser:
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

.PHONY: venv
venv: $(STAMPS)/requirements

$(STAMPS)/requirements: requirements-dev.txt requirements-apps.txt
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
marker: $(STAMPS)/marker-wheel

$(STAMPS)/marker-wheel: $(STAMPS)/requirements $(MARKER_INPUTS)
	rm -f $(WHEELS)/*.whl
	$(VENV)/bin/maturin build --release -m marker/Cargo.toml -o $(WHEELS) $(LOCKED)
	$(VENV_PY) -m pip install --quiet --force-reinstall --no-deps $(WHEELS)/*.whl
	@touch $@

# The app environment of CPython X.Y: what the fixture apps import, from wheels only
# (a missing wheel fails here, in seconds, not in a source build), and the marker wheel.
.PHONY: matrix
matrix: $(foreach v,$(MATRIX),.venv-$(v)/.stamps/marker)
	@$(check_pythons)

# Stamps, not intermediate files for make to delete.
.PRECIOUS: .venv-%/.stamps/requirements .venv-%/.stamps/marker
.SECONDEXPANSION:
.venv-%/.stamps/requirements: requirements-apps.txt $$(call pyenv_python,$$*)
	@test -n "$(call pyenv_python,$*)" \
		|| { echo "error: no CPython $* under $(PYENV_ROOT)/versions (try \`pyenv install $*\`)" >&2; exit 1; }
	@# Made anew when it is not a venv of that interpreter (pyenv replaced it, say).
	[ "$$(readlink -f .venv-$*/bin/python)" = "$$(readlink -f $(call pyenv_python,$*))" ] \
		|| { rm -rf .venv-$*; $(call pyenv_python,$*) -m venv .venv-$*; }
	@echo '*' > .venv-$*/.gitignore
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet --only-binary=:all: -r requirements-apps.txt
	@mkdir -p $(@D) && touch $@

.venv-%/.stamps/marker: .venv-%/.stamps/requirements $(STAMPS)/marker-wheel
	.venv-$*/bin/python -m pip install --quiet --force-reinstall --no-deps $(WHEELS)/*.whl
	@touch $@

# Which of PYTHON_VERSIONS pyenv lacks: an error under CI, a clear note otherwise.
define check_pythons
if [ -n "$(MISSING_PYTHONS)" ]; then \
	if [ -n "$${CI:-}" ]; then \
		echo "error: CPython $(MISSING_PYTHONS) missing under $(PYENV_ROOT)/versions; CI tests every one of $(PYTHON_VERSIONS)" >&2; exit 1; \
	else \
		echo "warning: CPython $(MISSING_PYTHONS) missing under $(PYENV_ROOT)/versions: not tested here (\`pyenv install X.Y\`); CI would fail" >&2; \
	fi; \
fi
endef

.PHONY: check-pythons
check-pythons:
	@$(check_pythons)

# --- checks ------------------------------------------------------------------

.PHONY: test
test: check-pythons lint-rust test-rust fuzz-smoke lint-python test-python test-matrix

# --- fuzzing -------------------------------------------------------------------
# libFuzzer targets in fuzz/ (their own crate, outside the workspace), built with
# the machine's stable toolchain and the sanitizer-coverage flags cargo-fuzz passes
# (all stable `-C` options; no sanitizer, so no nightly), into target/fuzz.
# `make fuzz-smoke` runs each over its committed corpus (fuzz/corpus/NAME) for
# FUZZ_SECONDS; `make fuzz FUZZ_TARGET=ring_reader FUZZ_SECONDS=3600` runs one for
# long, adding what it finds to the corpus. New inputs of a smoke run go to a
# scratch directory, so the committed corpus does not change under `make test`;
# the files a target works on (a store, a ring) go to another, on tmpfs.
FUZZ_TARGETS := event_decode ring_reader store_corrupt walker
FUZZ_SECONDS ?= 20
FUZZ_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
FUZZ_BIN := target/fuzz/$(FUZZ_TRIPLE)/release
FUZZ_FLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
	-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
	--cfg fuzzing -Cdebug-assertions -Coverflow-checks

.PHONY: fuzz-build
fuzz-build: venv
	cd fuzz && CARGO_TARGET_DIR=$(abspath target/fuzz) RUSTFLAGS="$(FUZZ_FLAGS)" \
		cargo build --release --target $(FUZZ_TRIPLE) --bins $(LOCKED)

.PHONY: fuzz-smoke
fuzz-smoke: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		scratch=$$(mktemp -d); \
		work=$$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d); \
		echo "=== fuzz $$t for $(FUZZ_SECONDS) s over fuzz/corpus/$$t"; \
		TIMEGLASS_FUZZ_DIR=$$work $(FUZZ_BIN)/$$t $$scratch fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
			-timeout=10 -artifact_prefix=$$scratch/ -print_final_stats=1 2>&1 \
			| grep -E 'stat::number_of_executed_units|ERROR|panicked|SUMMARY' ; \
		code=$${PIPESTATUS[0]}; \
		rm -rf $$work; \
		if [ $$code -ne 0 ]; then echo "error: fuzz target $$t failed; the input is in $$scratch" >&2; exit 1; fi; \
		rm -rf $$scratch; \
	done

.PHONY: fuzz
fuzz: fuzz-build
	$(FUZZ_BIN)/$(FUZZ_TARGET) fuzz/corpus/$(FUZZ_TARGET) -max_total_time=$(FUZZ_SECONDS) \
		-timeout=10 -artifact_prefix=fuzz/ -print_final_stats=1

.PHONY: lint-rust
lint-rust: venv
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets $(LOCKED) -- -D warnings

.PHONY: test-rust
test-rust: venv
	$(if $(TIMEGLASS_PYTHONS),TIMEGLASS_PYTHONS=$(TIMEGLASS_PYTHONS)) cargo test --workspace $(LOCKED)

# stubtest checks marker/python/timeglass/_native.pyi against the extension itself, so it
# needs the marker installed in .venv.
.PHONY: lint-python
lint-python: venv marker
	$(VENV)/bin/ruff check $(PY_LINT)
	$(VENV)/bin/ruff format --check $(PY_LINT)
	$(VENV)/bin/mypy $(PY_TYPED)
	$(VENV_PY) -m mypy.stubtest --allowlist marker/stubtest-allowlist.txt timeglass._native

# Two pytest runs: marker/tests and tests/ each have their own conftest.py.
.PHONY: test-python
test-python: build
	@if [ -d marker/tests ]; then $(VENV_PY) -m pytest marker/tests; \
		else echo "marker/tests does not exist yet: skipped"; fi
	@echo "=== tests/ with the apps on CPython $(MAIN_VERSION) ($(VENV_PY))"
	$(VENV_PY) -m pytest tests

# The core subset once per other CPython; every version runs, then any failure fails.
.PHONY: test-matrix
test-matrix: build matrix
	@failed=""; \
	for v in $(MATRIX); do \
		$(MAKE) --no-print-directory test-core-$$v || failed="$$failed $$v"; \
	done; \
	$(check_pythons); \
	if [ -n "$$failed" ]; then echo "error: the core subset failed on CPython$$failed" >&2; exit 1; fi

# The tests marked `core` with their apps on CPython X.Y; pytest checks that every app it
# recorded really ran on X.Y (tests/conftest.py).
test-core-%: build $$(if $$(filter $$*,$$(MAIN_VERSION)),,.venv-$$*/.stamps/marker)
	@echo "=== core subset (pytest -m core) with the apps on CPython $* ($(call app_python,$*))"
	TIMEGLASS_TEST_PYTHON=$(call app_python,$*) TIMEGLASS_TEST_PYTHON_VERSION=$* \
		$(VENV_PY) -m pytest -m core tests

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
	@command -v valgrind >/dev/null || { apt-get update && apt-get install -y valgrind; }
	$(VENV_PY) -m bench.run $(BENCH_ARGS)

.PHONY: clean
clean:
	rm -rf $(VENV) $(WHEELS) $(foreach v,$(PYTHON_VERSIONS),.venv-$(v))
