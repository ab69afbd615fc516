# The commands the README names. Everything a test needs is installed here (a clean machine has only
# the Rust toolchain, Python 3.11 with pip, and git).

PYTHON ?= python3
CARGO ?= cargo
BIN := target/release/cogvisor
# The binary the end-to-end and fault suites drive: the dev profile, whose dependencies `cargo test` has
# already compiled, so `make test` does not compile everything a second time with optimizations.
TEST_BIN := target/test-bin/cogvisor
# A checkout with nothing built yet (CI's clean clone) builds everything once: incremental
# compilation's caches only cost time there (the workspace's crates compile in 70 s instead of 92 s
# without them). A checkout that has built before keeps them, and an explicit CARGO_INCREMENTAL wins.
ifeq ($(wildcard target/debug),)
CARGO_INCREMENTAL ?= 0
export CARGO_INCREMENTAL
endif
PORT ?= 5000
HOST ?= 0.0.0.0

.PHONY: build build-test-bin serve test test-suites test-rust-then-servers test-deps check-tmp test-rust test-python test-python-oldest test-e2e test-e2e-first test-e2e-rest test-faults test-faults-shared test-faults-alone lint fmt python-deps e2e-deps clean bench bench-peer wheel maturin maturin-for-tests recycle-plot

build:
	$(CARGO) build --release --locked

serve: build
	$(BIN) serve examples/hello --host $(HOST) --port $(PORT)

# Every suite: formatting and lints, Rust unit/snapshot tests, the Python worker's tests, and the
# end-to-end suite that drives the real binary over HTTP (the wheel included), and the fault-injection
# suite. Then: the run left nothing in the system temp dir. pytest's own directories (every tmp_path, the
# servers' private TMPDIRs in them) go into one directory made for the run, removed when the suites
# pass and kept, for their logs, when they fail; the temp dir's listing before and after must match.
SYSTEM_TMP := $(or $(TMPDIR),/tmp)
TMP_BEFORE := target/system-tmp-before.txt
TMP_AFTER := target/system-tmp-after.txt
PYTEST_TMP ?=
basetemp = $(if $(PYTEST_TMP),--basetemp=$(PYTEST_TMP)/$(1))

test:
	@mkdir -p target
	@ls -A "$(SYSTEM_TMP)" | LC_ALL=C sort > $(TMP_BEFORE)
	@run=$$(mktemp -d "$(SYSTEM_TMP)/make-test.XXXXXX") && \
	if $(MAKE) --no-print-directory test-suites PYTEST_TMP=$$run; then rm -rf "$$run"; \
	else echo "make test: a suite failed; the tests' directories (server logs) are in $$run"; exit 1; fi
	@$(MAKE) --no-print-directory check-tmp

# The Python unit suites (both interpreters) need no Rust build: they run while the Rust tests compile
# (which leaves a core idle in linking and in the last crates). The end-to-end suite (two processes), the
# fault suite and lint then run side by side: the suites' servers mostly wait on their models. The one
# test that measures latency and memory against issue 15's targets (marked `alone`) runs after
# everything, on a quiet machine.
test-suites:
	@$(MAKE) --no-print-directory -j5 --output-sync=target test-python test-python-oldest test-rust-then-servers
	@$(MAKE) --no-print-directory test-faults-alone

test-rust-then-servers:
	@$(MAKE) --no-print-directory test-rust
	@$(MAKE) --no-print-directory test-deps
	@$(MAKE) --no-print-directory -j4 --output-sync=target test-e2e test-faults-shared lint

# Everything the suites install or build, once and in order (two pip runs at once could collide).
test-deps: build-test-bin e2e-deps maturin-for-tests

check-tmp:
	@ls -A "$(SYSTEM_TMP)" | LC_ALL=C sort > $(TMP_AFTER)
	@new=$$(LC_ALL=C comm -13 $(TMP_BEFORE) $(TMP_AFTER)); \
	if [ -n "$$new" ]; then \
		echo "make test left these in $(SYSTEM_TMP) (tests must use tmp_path; servers get a private TMPDIR):"; \
		echo "$$new" | while read -r e; do ls -ld "$(SYSTEM_TMP)/$$e" 2>/dev/null || echo "  $$e (gone since)"; done; \
		exit 1; \
	fi; \
	echo "make test left nothing in $(SYSTEM_TMP)"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test-rust:
	$(CARGO) test --locked --workspace

python-deps:
	@$(PYTHON) -c 'import pytest' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'pytest>=7'

# The end-to-end suite also parses GET /metrics with the Prometheus client's text parsers, the
# dashboard's and alerts' queries with a PromQL parser (tests/e2e/test_dashboard.py), and serves models
# that return pydantic v2 models (Cog's pydantic2_output and multi_file_schema tests).
e2e-deps: python-deps
	@$(PYTHON) -c 'import prometheus_client' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'prometheus-client>=0.20'
	@$(PYTHON) -c 'import promql_parser, yaml' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'promql-parser>=0.11,<0.12' 'pyyaml>=6'
	@$(PYTHON) -c 'import pydantic; assert int(pydantic.VERSION.split(".")[0]) >= 2' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'pydantic>=2'

test-python: python-deps
	$(PYTHON) -m pytest -q $(call basetemp,python) python/tests

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
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(call basetemp,python-oldest) python/tests
endif

# The test binary is the one `cargo test` builds (target/debug/cogvisor, with the test build's
# features): after test-rust this is a no-op, where `cargo build` would compile tokio and the
# workspace again without the dev-dependencies' features. The suites run a copy of it
# (target/test-bin/cogvisor): test_wheel's maturin build relinks target/debug/cogvisor with its own
# features while the other suites start servers, and a server started in that moment found no binary
# (CI saw 5 tests fail so).
build-test-bin:
	$(CARGO) test --locked --workspace --no-run
	@mkdir -p $(dir $(TEST_BIN))
	@cp -p target/debug/cogvisor $(TEST_BIN).partial && mv -f $(TEST_BIN).partial $(TEST_BIN)

# tests/e2e/test_wheel.py builds the wheel with maturin (the dev profile, so it reuses the dependencies
# `cargo test` compiled; it relinks target/debug/cogvisor with its own features, hence the copy above).
# The suite runs as two pytest processes at once (its servers mostly wait on their models), of about
# the same length: the recycling and health files with a few of the others, and the rest (which
# took 38 s longer on a clean clone before test_cog_it_cancel and test_cog_it_webhook_errors moved).
E2E_FIRST := $(addprefix tests/e2e/,test_overlap.py test_max_rss.py test_pool.py test_recycle.py \
	test_hooks.py test_health.py test_cog_it_healthcheck.py test_webhooks.py \
	test_cog_it_types.py test_async_and_polling.py test_cog_it_cancel.py test_cog_it_webhook_errors.py)
E2E_ENV = COGVISOR_BIN=$(CURDIR)/$(TEST_BIN) MATURIN=$(CURDIR)/$(MATURIN)
test-e2e: test-e2e-first test-e2e-rest
test-e2e-first: build-test-bin e2e-deps maturin-for-tests
	$(E2E_ENV) $(PYTHON) -m pytest -q $(call basetemp,e2e-first) $(E2E_FIRST)
test-e2e-rest: build-test-bin e2e-deps maturin-for-tests
	$(E2E_ENV) $(PYTHON) -m pytest -q $(call basetemp,e2e-rest) $(addprefix --ignore=,$(E2E_FIRST)) tests/e2e

# Breaks the worker on purpose (crashes, hangs, forks, floods, garbage frames, bad HTTP) and checks the
# recovery, the health transitions, and that no process or temp file is left. See docs/faults.md.
test-faults: test-faults-shared test-faults-alone

test-faults-shared: build-test-bin python-deps
	COGVISOR_BIN=$(CURDIR)/$(TEST_BIN) $(PYTHON) -m pytest -q -m "not alone" $(call basetemp,faults) tests/faults

test-faults-alone: build-test-bin python-deps
	COGVISOR_BIN=$(CURDIR)/$(TEST_BIN) $(PYTHON) -m pytest -q -m alone $(call basetemp,faults-alone) tests/faults

fmt:
	$(CARGO) fmt --all

# The wheel (pyproject.toml): the cogvisor binary plus the `cog` package with the launcher
# `python -m cog.server.http`; `pip install dist/cogvisor-*.whl`. maturin comes from PyPI into a private
# venv, never into the system's Python.
WHEEL_VENV := target/wheel-venv
MATURIN := $(WHEEL_VENV)/bin/maturin
MATURIN_SPEC := maturin>=1.5,<2

maturin:
	@test -x $(MATURIN) || { test -x $(WHEEL_VENV)/bin/python || $(PYTHON) -m venv $(WHEEL_VENV); } && \
	{ test -x $(MATURIN) || $(WHEEL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(MATURIN_SPEC)'; }

# The suites skip the wheel test (saying so) when maturin cannot be installed; everything else fails.
maturin-for-tests:
	@$(MAKE) --no-print-directory maturin || echo "maturin could not be installed into $(WHEEL_VENV): tests/e2e/test_wheel.py will be skipped"

wheel: maturin
	$(MATURIN) build --release --out dist

# Benchmarks against coglet 0.23.1 (not part of `make test`; see docs/performance.md). The peer runs
# from a private venv; bench/run.py installs wrk (Debian package) when it is missing.
PEER_VENV := bench/.venv-peer
BENCH_ARGS ?=

bench-peer:
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check coglet==0.23.1 cog==0.23.1

bench: build bench-peer
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# docs/img/recycle.png: request rate, 503s and health state while a model recycles every N predictions
# under a steady client (bench/recycle_plot.py; docs/recycling.md). matplotlib, a dev dependency only,
# goes into the private venv bench/.venv-plot. Not part of `make test`. PLOT_ARGS, e.g. --seconds 60.
PLOT_VENV := bench/.venv-plot
PLOT_ARGS ?=

recycle-plot: build
	@test -x $(PLOT_VENV)/bin/python || $(PYTHON) -m venv $(PLOT_VENV)
	@$(PLOT_VENV)/bin/python -c 'import matplotlib' 2>/dev/null || $(PLOT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.7'
	$(PLOT_VENV)/bin/python bench/recycle_plot.py --bin $(BIN) $(PLOT_ARGS)

clean:
	$(CARGO) clean
