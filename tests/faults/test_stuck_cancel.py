"""A prediction stuck in C code (`time.sleep` in a sync predict, libc `pause()`) is cancelled: the
cancel cannot reach it, so after `cancel_grace` its slot is poisoned (visible in /health-check), the
prediction ends `canceled`, and with every slot poisoned the worker is recycled. coglet waits for the
sleep to return (58 s) and has no escalation at all."""

from __future__ import annotations

import json
import time

import pytest

from faultlib import assert_valid_transitions, wait_dead, wait_no_temp_leftovers, wait_tree_gone
from helpers import wait_for


def put_async(server, pid: str, input: dict) -> None:
    r = server.request(
        "PUT",
        f"/predictions/{pid}",
        body=json.dumps({"input": input}).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202, (r.status, r.body)


@pytest.mark.parametrize("mode", ["sleep", "pause"])
def test_a_cancel_that_cannot_land_poisons_the_slot_then_recycles(start, mode):
    f = start("faulty", env={"COGVISOR_CANCEL_GRACE": "1s", "COGVISOR_STOP_GRACE": "1s"})
    recorder = f.record()
    old = f.worker_pid()
    put_async(f.server, "stuck", {"mode": mode, "seconds": 600})
    wait_for(
        lambda: "faulty: mode=" in (f.server.get_json("/predictions/stuck")[1].get("logs") or ""),
        timeout=30,
        what="the prediction to start",
    )

    cancelled_at = time.monotonic()
    r = f.server.request("POST", "/predictions/stuck/cancel")
    assert r.status == 200, r.body

    def ended():
        status, body = f.server.get_json("/predictions/stuck")
        return body if body.get("status") in ("succeeded", "failed", "canceled") else None

    body = wait_for(ended, timeout=30, what="the stuck prediction to end")
    ended_in = time.monotonic() - cancelled_at
    assert body["status"] == "canceled", body
    assert ended_in < 10, f"ended {ended_in:.1f} s after the cancel with a 1 s cancel_grace"

    # The poisoned slot was shown with its reason, then the worker was recycled.
    poisoned = wait_for(
        lambda: next((s for s in list(recorder.samples) if s.body["slots"]["poisoned"] or s.generation >= 2), None),
        timeout=30,
        what="a poisoned slot or the recycle",
    )
    h = f.wait_ready_generation(2)
    assert h["worker"]["last_recycle"]["trigger"] == "all_slots_poisoned", h
    assert "did not stop within 1.0s of being cancelled" in h["worker"]["last_recycle"]["reason"], h
    assert h["slots"]["poisoned"] == [], h
    if poisoned.generation == 1:
        reasons = [p["reason"] for p in poisoned.body["slots"]["poisoned"]]
        assert any("stuck" in r and "cancelled" in r for r in reasons), poisoned.body
    wait_dead(old)
    wait_tree_gone(f.server, old)
    assert f.assert_serves()["generation"] == 2
    samples = recorder.stop()
    assert_valid_transitions(samples)
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
