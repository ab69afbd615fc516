"""SIGKILL of the worker, idle and in the middle of a prediction: the in-flight request fails at once
naming the signal, the worker is restarted without outside help, and nothing of the old one remains."""

from __future__ import annotations

import os
import signal
import time

from faultlib import in_background, wait_busy, wait_dead


def test_sigkill_of_an_idle_worker_restarts_it(start):
    f = start("faulty")
    f.record()
    old = f.worker_pid()

    os.kill(old, signal.SIGKILL)
    dead_at = wait_dead(old)
    h = f.wait_ready_generation(2)

    assert h["worker"]["pid"] != old and h["worker"]["restarts"] == 1, h
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "worker_exit" and "SIGKILL" in last["reason"], last
    assert last["succeeded"] is True, last
    f.assert_replaced_cleanly(old, dead_at)


def test_sigkill_during_a_prediction_fails_it_at_once(start):
    f = start("faulty")
    recorder = f.record()
    old = f.worker_pid()
    pending = in_background(f.predict, mode="sleep", seconds=60)
    wait_busy(f.server)
    recorder.wait_seen("BUSY")

    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    status, body = pending.result(timeout=30)
    answered_in = time.monotonic() - killed_at

    assert status == 200 and body["status"] == "failed", body
    assert "SIGKILL" in body["error"] and "exited unexpectedly" in body["error"], body
    assert answered_in < 5, f"the in-flight request was answered {answered_in:.1f} s after the kill"
    dead_at = wait_dead(old)
    h = f.wait_ready_generation(2)
    assert h["slots"]["busy"] == 0 and h["slots"]["poisoned"] == [], h
    f.assert_replaced_cleanly(old, dead_at)
