# The commands the README names. Everything a test needs is installed here (a clean machine has only
# the Rust toolchain, Python 3.11 with pip, and git).

PYTHON ?= python3
CARGO ?= cargo
BIN := target/release/cogvisor
PORT ?= 5000

.PHONY: build serve test test-rust test-python test-e2e lint fmt python-deps clean bench bench-peer

build:
	$(CARGO) build --release --locked

serve: build
	$(BIN) serve examples/hello --port $(PORT)

# Every suite: formatting and lints, Rust unit/snapshot tests, the Python worker's tests, and the
# end-to-end suite that drives the real binary over HTTP.
test: lint test-rust test-python test-e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test-rust:
	$(CARGO) test --locked --workspace

python-deps:
	@$(PYTHON) -c 'import pytest' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'pytest>=7'

test-python: python-deps
	$(PYTHON) -m pytest -q python/tests

test-e2e: build python-deps
	COGVISOR_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest -q tests/e2e

fmt:
	$(CARGO) fmt --all

# Benchmarks against coglet 0.23.1 (not part of `make test`; see docs/performance.md). The peer runs
# from a private venv; bench/run.py installs wrk (Debian package) when it is missing.
PEER_VENV := bench/.venv-peer
BENCH_ARGS ?=

bench-peer:
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check coglet==0.23.1 cog==0.23.1

bench: build bench-peer
	$(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	$(CARGO) clean
