"""The worker dies inside predict(): `os._exit(7)`, a segfault (`ctypes.string_at(0)`), or SIGKILL of
itself. The request fails naming the exit code or signal, the worker is restarted (coglet stays
UNHEALTHY and answers 409 for ever), and the old worker is gone and reaped."""

from __future__ import annotations

import time

import pytest

from faultlib import assert_valid_transitions, wait_dead, wait_no_temp_leftovers, wait_tree_gone


@pytest.mark.parametrize(
    ("mode", "named"),
    [
        ("os_exit", "exit code 7"),
        ("segfault", "SIGSEGV"),
        ("sigkill_self", "SIGKILL"),
    ],
)
def test_worker_death_in_predict_fails_the_request_and_restarts(start, mode, named):
    f = start("faulty")
    f.record()
    old = f.worker_pid()

    sent = time.monotonic()
    status, body = f.predict(mode=mode)
    elapsed = time.monotonic() - sent

    assert status == 200 and body["status"] == "failed", body
    assert named in body["error"], body
    assert f"faulty: mode={mode}" in body["logs"], body
    assert elapsed < 10, f"answered after {elapsed:.1f} s"
    dead_at = wait_dead(old)
    h = f.wait_ready_generation(2)
    assert h["worker"]["restarts"] == 1, h
    assert named in h["worker"]["last_recycle"]["reason"], h
    assert h["worker"]["last_recycle"]["trigger"] == "worker_exit", h
    f.assert_replaced_cleanly(old, dead_at)


def test_crashes_past_the_restart_budget_end_defunct(start):
    f = start("faulty", env={"COGVISOR_RECYCLE_RESTART_BUDGET": "2 in 300s"})
    recorder = f.record()
    pids = []
    for generation in (1, 2, 3):
        if generation > 1:
            f.wait_ready_generation(generation)
        pids.append(f.worker_pid())
        status, body = f.predict(mode="os_exit")
        assert status == 200 and body["status"] == "failed" and "exit code 7" in body["error"], body
    h = f.server.wait_status("DEFUNCT", timeout=60)
    assert "restart budget exhausted" in h["reason"], h
    assert h["worker"]["pid"] is None, h
    assert f.server.request("GET", "/livez").status == 503
    assert f.server.request("GET", "/readyz").status == 503
    status, body = f.predict(mode="ok")
    assert status == 503, body
    for pid in pids:
        wait_tree_gone(f.server, pid)
    samples = recorder.stop()
    assert_valid_transitions(samples)
    assert recorder.statuses()[-1] == "DEFUNCT", recorder.statuses()
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
