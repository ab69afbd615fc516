"""Fixtures for the fault-injection suite.

The server fixtures are the end-to-end suite's own (tests/e2e/conftest.py and helpers.py), loaded here
rather than copied. On top of them `start` gives every server a private TMPDIR, so a test can check that
nothing is left in it, and a model from tests/faults/models by name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_spec = importlib.util.spec_from_file_location("e2e_conftest", E2E / "conftest.py")
assert _spec is not None and _spec.loader is not None, f"cannot load {E2E / 'conftest.py'}"
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)

# The e2e suite's hooks and its `serve` fixture, as they are.
pytest_sessionstart = _e2e.pytest_sessionstart
pytest_runtest_makereport = _e2e.pytest_runtest_makereport
serve = _e2e.serve
server_tmpdir = _e2e.server_tmpdir

from faultlib import FAULT_MODELS, Fault  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # `make test` runs the tests marked `alone` after every other suite, on a quiet machine: they
    # measure latency and memory against targets, which the other suites' load would blur.
    config.addinivalue_line("markers", "alone: measures latency or memory; run with no other suite beside it")


@pytest.fixture
def start(serve, tmp_path, tmp_path_factory):
    """Factory: `start("faulty", env=...)` serves tests/faults/models/faulty with its own TMPDIR and
    returns a `Fault` (the server, its TMPDIR, a directory for pid files, a health recorder)."""
    count = 0

    def go(model: str, env: dict[str, str] | None = None, **kwargs) -> Fault:
        nonlocal count
        count += 1
        # Short (see `server_tmpdir`): the runtime directory and its sockets go under it.
        tmpdir = tmp_path_factory.mktemp("tmp")
        pid_dir = tmp_path / f"pids-{count}"
        pid_dir.mkdir()
        server = serve(FAULT_MODELS / model, env={"TMPDIR": str(tmpdir), **(env or {})}, **kwargs)
        return Fault(server=server, tmpdir=tmpdir, pid_dir=pid_dir)

    return go
