"""`predict_timeout` on a prediction stuck in C code: the timeout cancels it, the cancel cannot land,
so after `cancel_grace` the slot is poisoned, the prediction ends `failed` naming the timeout, and the
worker is recycled. coglet has no prediction timeout: a stuck predict holds its slot for ever."""

from __future__ import annotations

import time

from faultlib import assert_valid_transitions, wait_dead, wait_no_temp_leftovers, wait_tree_gone


def test_a_stuck_prediction_past_predict_timeout_fails_and_the_worker_is_recycled(start):
    f = start(
        "faulty",
        env={"COGVISOR_PREDICT_TIMEOUT": "1s", "COGVISOR_CANCEL_GRACE": "1s", "COGVISOR_STOP_GRACE": "1s"},
    )
    recorder = f.record()
    old = f.worker_pid()

    sent = time.monotonic()
    status, body = f.predict(mode="pause")
    elapsed = time.monotonic() - sent

    assert status == 200 and body["status"] == "failed", body
    assert "timed out" in body["error"] and "predict_timeout" in body["error"], body
    assert elapsed < 15, f"answered {elapsed:.1f} s after it was sent, with 1 s timeout and grace"
    h = f.wait_ready_generation(2)
    assert h["worker"]["last_recycle"]["trigger"] == "all_slots_poisoned", h
    wait_dead(old)
    wait_tree_gone(f.server, old)
    assert f.assert_serves()["generation"] == 2
    assert_valid_transitions(recorder.stop())
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
