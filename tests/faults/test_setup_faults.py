"""setup() raises, exits (sys.exit and os._exit) or hangs past the setup timeout: health goes
STARTING → SETUP_FAILED with the cause in `setup.logs`, predictions get 503, /livez fails, and the
failed worker is stopped with everything it started (coglet leaves a hung worker running)."""

from __future__ import annotations

import time

import pytest

from faultlib import assert_valid_transitions, read_pids, wait_no_temp_leftovers, wait_tree_gone


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("raise", "RuntimeError: boom in setup"),
        ("sys_exit", "SystemExit"),
        ("os_exit", "exit code 3"),
        ("hang", "timed out"),
    ],
)
def test_setup_fault_ends_setup_failed_with_nothing_left(start, tmp_path, fault, cause):
    pid_dir = tmp_path / "setup-pids"
    pid_dir.mkdir()
    started = time.monotonic()
    f = start(
        "setup_faults",
        env={"FAULT_SETUP": fault, "FAULT_PID_DIR": str(pid_dir), "COG_SETUP_TIMEOUT": "2", "COGVISOR_STOP_GRACE": "1s"},
        wait=None,
    )
    recorder = f.record()
    pids = read_pids(pid_dir, "worker", "child")

    h = f.server.wait_status("SETUP_FAILED", timeout=60)
    elapsed = time.monotonic() - started

    assert h["setup"]["status"] == "failed", h
    assert cause in h["setup"]["logs"], h
    assert f"setup_faults: {fault}" in h["setup"]["logs"], h
    assert h["worker"]["pid"] is None, h
    if fault == "hang":
        assert elapsed < 15, f"SETUP_FAILED {elapsed:.1f} s after start with a 2 s setup timeout"
    status, body = f.predict()
    assert status == 503, body
    assert f.server.request("GET", "/livez").status == 503
    assert f.server.request("GET", "/readyz").status == 503

    f.server.worker_pids.add(pids["worker"])  # teardown kills its group if the test fails
    wait_tree_gone(f.server, pids["worker"], {"setup child": pids["child"]})
    # The server itself stays up, still SETUP_FAILED (final).
    assert f.server.health()["status"] == "SETUP_FAILED"
    samples = recorder.stop()
    assert_valid_transitions(samples)
    assert recorder.statuses()[-1] == "SETUP_FAILED", recorder.statuses()
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
