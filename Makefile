# The model router: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
CRATE := scorer-rs
RUST_SOURCES := $(wildcard $(CRATE)/src/*.rs) $(CRATE)/Cargo.toml
PROTO_FLAGS := -Iservice/pb=proto --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=.

.PHONY: help install build proto proto-check fmt lint test test-slow bench profile run clean system-deps

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

system-deps: ## Install redis-server, h2load (nghttp2-client) and chromium from Debian's packages when missing
	@command -v redis-server >/dev/null && command -v h2load >/dev/null && command -v chromium >/dev/null || { \
	  echo "installing redis-server, nghttp2-client (h2load) and chromium (the dashboard's browser test) from Debian's packages"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server nghttp2-client chromium >/dev/null; }

$(VENV)/.installed: pyproject.toml $(RUST_SOURCES)
	@echo "setting up $(VENV): Python dependencies, then the Rust scorer (compiled in release mode: about a minute the first time)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@
	@echo "$(VENV) is ready"

install: system-deps $(VENV)/.installed ## Set up everything: system packages, virtualenv, Python deps, the Rust extension

build: ## Rebuild the Rust extension into the virtualenv
	@echo "compiling the Rust scorer into $(VENV)"
	$(PY) -m pip install -q --no-deps -e .
	touch $(VENV)/.installed

proto: $(VENV)/.installed ## Regenerate the gRPC stubs from proto/
	PATH=$(BIN):$$PATH $(PY) -m grpc_tools.protoc $(PROTO_FLAGS) proto/router/v1/router.proto

proto-check: $(VENV)/.installed ## Fail when the committed stubs differ from freshly generated ones
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	PATH=$(BIN):$$PATH $(PY) -m grpc_tools.protoc -Iservice/pb=proto --python_out=$$tmp \
	  --grpc_python_out=$$tmp --mypy_out=$$tmp --mypy_grpc_out=$$tmp proto/router/v1/router.proto && \
	diff -r -x __init__.py -x __pycache__ -x '*.pyc' $$tmp/service/pb service/pb && echo "proto stubs are up to date"

fmt: $(VENV)/.installed ## Format Python and Rust
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .
	cd $(CRATE) && cargo fmt

lint: $(VENV)/.installed ## ruff, mypy --strict, stubtest, cargo fmt --check, clippy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PY) -m mypy.stubtest service._scorer
	cd $(CRATE) && cargo fmt --check
	cd $(CRATE) && cargo clippy --all-targets -- -D warnings
	cd $(CRATE) && cargo clippy --all-targets --features python -- -D warnings

test: install proto-check lint ## Install, check and run every test (Rust and Python) but the slow ones
	cd $(CRATE) && cargo test
	$(BIN)/pytest

test-slow: install ## Run the slow tests: a router process soaked under load for minutes
	$(BIN)/pytest -m slow -s

bench: install ## Measure speed (p50, p99, p99.9) of everything; write bench/report.md, report.json, plots/
	$(PY) -m bench.report

profile: install ## Where a completion's CPU goes: py-spy samples of the router against a bare forwarder
	$(PY) -m bench.profile_complete

run: install ## Serve gRPC on :50051 and REST on :8000 beside a Redis of its own (ROUTER_REDIS_URL: yours)
	$(PY) -m cli.local_redis

clean: ## Remove build outputs and the virtualenv
	rm -rf $(VENV) $(CRATE)/target service/_scorer*.so .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
