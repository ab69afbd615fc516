"""With two slots, a bad frame on one slot socket is an error of that slot only: it is poisoned and
shown with its reason, its prediction fails, the other slot's prediction runs on to success, and the
worker keeps serving on the healthy slot. Only when the second slot is poisoned too is the worker
recycled."""

from __future__ import annotations

import pytest

from faultlib import assert_valid_transitions, in_background, wait_busy, wait_no_temp_leftovers, wait_tree_gone


@pytest.mark.parametrize(
    ("mode", "named"),
    [
        ("malformed_slot_frame", "malformed message"),
        ("oversized_slot_frame", "exceeds the 8388608-byte limit"),
    ],
)
def test_a_bad_frame_poisons_only_its_own_slot(start, mode, named):
    f = start("faulty_async", env={"COGVISOR_STOP_GRACE": "1s"})
    recorder = f.record()
    worker = f.worker_pid()
    long_running = in_background(f.predict, mode="sleep", seconds=3)
    wait_busy(f.server, 1)

    status, body = f.predict(mode=mode, seconds=60)
    assert status == 200 and body["status"] == "failed", body
    assert named in body["error"], body

    h = f.server.health()
    assert h["status"] in ("READY", "BUSY") and h["worker"]["generation"] == 1, h
    assert len(h["slots"]["poisoned"]) == 1 and named in h["slots"]["poisoned"][0]["reason"], h
    # The other slot's prediction was not disturbed, and the worker still serves on it.
    status, body = long_running.result(timeout=60)
    assert status == 200 and body["status"] == "succeeded", body
    out = f.assert_serves()
    assert out["pid"] == worker and out["generation"] == 1, out

    # The second slot goes the same way: now every slot is poisoned and the worker is recycled.
    status, body = f.predict(mode=mode, seconds=60)
    assert status == 200 and body["status"] == "failed", body
    h = f.wait_ready_generation(2)
    assert h["worker"]["last_recycle"]["trigger"] == "all_slots_poisoned", h
    assert h["slots"]["poisoned"] == [] and h["slots"]["total"] == 2, h
    wait_tree_gone(f.server, worker)
    assert f.assert_serves()["generation"] == 2
    assert_valid_transitions(recorder.stop())
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
