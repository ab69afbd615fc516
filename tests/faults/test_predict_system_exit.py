"""`raise SystemExit(4)` in predict() is an exception like any other: the prediction fails naming it,
and the same worker keeps serving (no restart)."""

from __future__ import annotations

from faultlib import assert_valid_transitions, wait_no_temp_leftovers


def test_system_exit_in_predict_fails_only_that_prediction(start):
    f = start("faulty")
    recorder = f.record()
    pid = f.worker_pid()

    status, body = f.predict(mode="system_exit")

    assert status == 200 and body["status"] == "failed", body
    assert "SystemExit" in body["error"] and "4" in body["error"], body
    assert "faulty: mode=system_exit" in body["logs"], body
    out = f.assert_serves()
    assert out["pid"] == pid and out["generation"] == 1, out
    h = f.server.health()
    assert h["status"] == "READY" and h["worker"]["restarts"] == 0 and h["worker"]["pid"] == pid, h
    samples = recorder.stop()
    assert_valid_transitions(samples)
    assert set(recorder.statuses()) <= {"READY", "BUSY"}, recorder.statuses()
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
