"""Fixtures for the end-to-end suite.

Every test drives the real binary (`COGVISOR_BIN`, default `target/release/cogvisor`) over HTTP. The
`serve` fixture starts `cogvisor serve MODEL --host 127.0.0.1 --port <free port>` in its own session,
captures its stderr to a file (its tail is printed when a test fails), and at teardown kills the server
and anything it left behind. The binary must leave nothing itself; tests that care assert that directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import BIN, EXAMPLES, MODELS, Server, spawn_server, wait_listening


def pytest_sessionstart(session):
    if not BIN.exists():
        pytest.exit(
            f"cogvisor binary not found at {BIN}: run `cargo build --release` (or set COGVISOR_BIN)",
            returncode=2,
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def model_path(name: str) -> Path:
    """`hello` is the example; everything else is a test model."""
    path = EXAMPLES / name
    return path if path.is_dir() else MODELS / name


@pytest.fixture
def server_tmpdir(tmp_path_factory) -> Path:
    """A private TMPDIR for a server, with a short path: the server's runtime directory and its slot
    sockets go under it, and a Unix socket's path is at most 107 bytes (a `tmp_path`, named after the
    test, can be too long for that, and the server would then use /tmp instead)."""
    return tmp_path_factory.mktemp("tmp")


@pytest.fixture
def serve(request, tmp_path, tmp_path_factory):
    """Factory: `serve("hello")` starts a server and waits until it is READY.

    `serve(name, wait="SETUP_FAILED")` waits for another status instead; `wait=None` returns as soon as
    the port answers, `listen=False` as soon as the process is started. `env` adds environment variables.
    """
    servers: list[Server] = []

    def start(
        model: str | Path,
        env: dict[str, str] | None = None,
        wait: str | None = "READY",
        listen: bool = True,
        timeout: float = 60,
        extra_args: tuple[str, ...] = (),
    ) -> Server:
        model_dir = model if isinstance(model, Path) else model_path(model)
        env = {"TMPDIR": str(tmp_path_factory.mktemp("tmp")), **(env or {})}
        server = spawn_server(model_dir, tmp_path / "logs", env=env, extra_args=extra_args)
        servers.append(server)
        if listen:
            wait_listening(server, timeout=timeout)
        if wait is not None:
            server.wait_status(wait, timeout=timeout)
        return server

    yield start

    failed = any(getattr(request.node, f"rep_{when}", None) is not None and getattr(request.node, f"rep_{when}").failed
                 for when in ("setup", "call"))
    for server in servers:
        leftovers = server.cleanup()
        if failed:
            print(server.stderr_tail(80))
        if leftovers:
            print(f"teardown killed processes left by server {server.pid}: {leftovers}")
