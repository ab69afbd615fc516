# The commands the README names. Everything a test needs is installed here (a clean machine has only
# the Rust toolchain, Python 3.11 with pip, and git).

PYTHON ?= python3
CARGO ?= cargo
BIN := target/release/cogvisor
PORT ?= 5000

.PHONY: build serve test test-rust test-python test-e2e test-faults lint fmt python-deps clean

build:
	$(CARGO) build --release --locked

serve: build
	$(BIN) serve examples/hello --port $(PORT)

# Every suite: formatting and lints, Rust unit/snapshot tests, the Python worker's tests, and the
# end-to-end suite that drives the real binary over HTTP, and the fault-injection suite.
test: lint test-rust test-python test-e2e test-faults

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

# Breaks the worker on purpose (crashes, hangs, forks, floods, garbage frames, bad HTTP) and checks the
# recovery, the health transitions, and that no process or temp file is left. See docs/faults.md.
test-faults: build python-deps
	COGVISOR_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest -q tests/faults

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
