# The commands the README names. Everything a test needs is installed here (a clean machine has only
# the Rust toolchain, Python 3.11 with pip, and git).

PYTHON ?= python3
CARGO ?= cargo
BIN := target/release/cogvisor
# The binary the end-to-end and fault suites drive: the dev profile, whose dependencies `cargo test` has
# already compiled, so `make test` does not compile everything a second time with optimizations.
TEST_BIN := target/debug/cogvisor
PORT ?= 5000

.PHONY: build build-test-bin serve test test-rust test-python test-python-oldest test-e2e test-faults lint fmt python-deps e2e-deps clean bench bench-peer

build:
	$(CARGO) build --release --locked

serve: build
	$(BIN) serve examples/hello --port $(PORT)

# Every suite: formatting and lints, Rust unit/snapshot tests, the Python worker's tests, and the
# end-to-end suite that drives the real binary over HTTP, and the fault-injection suite.
test: lint test-rust test-python test-python-oldest test-e2e test-faults

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test-rust:
	$(CARGO) test --locked --workspace

python-deps:
	@$(PYTHON) -c 'import pytest' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'pytest>=7'

# The end-to-end suite also parses GET /metrics with the Prometheus client's text parsers, and serves
# models that return pydantic v2 models (Cog's pydantic2_output and multi_file_schema tests).
e2e-deps: python-deps
	@$(PYTHON) -c 'import prometheus_client' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'prometheus-client>=0.20'
	@$(PYTHON) -c 'import pydantic; assert int(pydantic.VERSION.split(".")[0]) >= 2' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'pydantic>=2'

test-python: python-deps
	$(PYTHON) -m pytest -q python/tests

# The worker and the SDK run inside users' model environments, Python >= 3.10: their tests run on the
# oldest supported version too when one is on this machine (PATH or pyenv), in a private venv.
PYTHON_OLDEST ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $$(command -v python3.10); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo "$$p" && break; done)
OLDEST_VENV := target/py-oldest

test-python-oldest:
ifeq ($(PYTHON_OLDEST),)
	@echo "test-python-oldest: skipped, no Python 3.10 on this machine (PATH or ~/.pyenv)"
else
	@test -x $(OLDEST_VENV)/bin/python || $(PYTHON_OLDEST) -m venv $(OLDEST_VENV)
	@$(OLDEST_VENV)/bin/python -c 'import pytest' 2>/dev/null || $(OLDEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'pytest>=7'
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider python/tests
endif

build-test-bin:
	$(CARGO) build --locked --bin cogvisor

test-e2e: build-test-bin e2e-deps
	COGVISOR_BIN=$(CURDIR)/$(TEST_BIN) $(PYTHON) -m pytest -q tests/e2e

# Breaks the worker on purpose (crashes, hangs, forks, floods, garbage frames, bad HTTP) and checks the
# recovery, the health transitions, and that no process or temp file is left. See docs/faults.md.
test-faults: build-test-bin python-deps
	COGVISOR_BIN=$(CURDIR)/$(TEST_BIN) $(PYTHON) -m pytest -q tests/faults

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
