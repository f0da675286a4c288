# Developer entry points for toolcase_rs (Rust + PyO3, built by maturin).
# `make` or `make help` lists the targets. Build targets install into the active Python
# environment (maturin develop needs a virtualenv or conda env, or a .venv in this directory).

.DEFAULT_GOAL := help

PYTHON ?= python
MATURIN ?= maturin
CARGO ?= cargo
# Python sources that ruff formats and lints.
PY_SOURCES := python/toolcase_rs benches tests
# What mypy (strict, see pyproject.toml) checks. The package directory holds the stub
# python/toolcase_rs/_toolcase_rs.pyi, so the stub is checked with it; naming the .pyi again
# would make mypy see the module twice ("Duplicate module named").
MYPY_TARGETS := python/toolcase_rs benches

.PHONY: help
help: ## Show this help
	@echo "Usage: make <target>"
	@echo
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build-dev
build-dev: ## Build the native module (debug) into the active environment
	$(MATURIN) develop

.PHONY: build-prod
build-prod: ## Build the native module (release, LTO) into the active environment
	$(MATURIN) develop --release

.PHONY: test
test: ## Run the Python test suite (needs a build: make build-dev)
	$(PYTHON) -m pytest

.PHONY: test-rust
test-rust: ## Run the pure-Rust unit tests (scope tree, deadline heap, registry)
	$(CARGO) test

.PHONY: lint
lint: ## Check formatting, clippy, ruff and mypy (stub and package); changes nothing
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(PYTHON) -m ruff check $(PY_SOURCES)
	$(PYTHON) -m ruff format --check $(PY_SOURCES)
	$(PYTHON) -m mypy $(MYPY_TARGETS)

.PHONY: stubtest
stubtest: ## Compare the stub with the built native module (needs a build)
	$(PYTHON) -m mypy.stubtest toolcase_rs._toolcase_rs

.PHONY: format
format: ## Format Rust and Python sources and apply ruff's safe fixes
	$(CARGO) fmt
	$(PYTHON) -m ruff check --fix $(PY_SOURCES)
	$(PYTHON) -m ruff format $(PY_SOURCES)

.PHONY: bench
bench: ## Full side-by-side benchmark suite vs asyncio, AnyIO and peers (build-prod first)
	$(PYTHON) benches/run.py

.PHONY: demo
demo: ## Quick demo table from the installed package (seconds): python -m toolcase_rs --quick
	$(PYTHON) -m toolcase_rs --quick
