"""Where the server's private runtime directory goes: under TMPDIR, or /tmp when TMPDIR's path is too
long for the slot sockets in it (crates/supervisor/src/runtime_dir.rs)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from helpers import assert_succeeded, wait_for

SYSTEM_TMP = Path("/tmp")


def owned_runtime_dirs(parent: Path, pid: int) -> list[Path]:
    """`cogvisor-*` directories under `parent` whose owner file names `pid`."""
    found = []
    for d in parent.glob("cogvisor-*"):
        try:
            owner = (d / "owner").read_text().split()
        except OSError:
            continue
        if owner and owner[0] == str(pid):
            found.append(d)
    return found


def test_a_temp_dir_too_long_for_slot_sockets_puts_the_runtime_dir_under_tmp(serve, server_tmpdir):
    long_tmp = server_tmpdir / ("d" * 80)
    long_tmp.mkdir()
    server = serve("hello", env={"TMPDIR": str(long_tmp)})
    assert_succeeded(*server.predict({"text": "world"}))

    assert owned_runtime_dirs(long_tmp, server.pid) == []
    [runtime] = owned_runtime_dirs(SYSTEM_TMP, server.pid)
    warnings = [json.loads(line) for line in server.stderr_text().splitlines()
                if "too long for the slot sockets" in line]
    assert len(warnings) == 1, server.stderr_tail()
    assert warnings[0]["level"] == "WARN" and warnings[0]["temp_dir"] == str(long_tmp), warnings

    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=30) == 0, server.stderr_tail()
    wait_for(lambda: not runtime.exists(), timeout=10, what=f"{runtime} removed after the server stopped")


def test_a_short_temp_dir_holds_the_runtime_dir(serve, server_tmpdir):
    server = serve("hello", env={"TMPDIR": str(server_tmpdir)})
    assert len(owned_runtime_dirs(server_tmpdir, server.pid)) == 1
    assert owned_runtime_dirs(SYSTEM_TMP, server.pid) == []
    assert "too long for the slot sockets" not in server.stderr_text()
