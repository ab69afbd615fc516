"""Model code writes garbage to the worker's own channels: a malformed frame and a frame header
announcing 9 MiB (over the 8 MiB limit), on the control pipe and on its slot socket.

* On the slot socket it is an error of that channel only: the slot is poisoned, the prediction fails
  naming the channel error, and with every slot poisoned the worker is recycled.
* On the control pipe the channel cannot be trusted any more: the worker is stopped and restarted.

Either way the request is answered (no hang), the server never crashes, and the old tree is gone."""

from __future__ import annotations

import time

import pytest

from faultlib import assert_valid_transitions, wait_dead, wait_no_temp_leftovers, wait_tree_gone


@pytest.mark.parametrize(
    ("mode", "named"),
    [
        ("malformed_slot_frame", "malformed message"),
        ("oversized_slot_frame", "exceeds the 8388608-byte limit"),
    ],
)
def test_a_bad_frame_on_the_slot_socket_poisons_the_slot_and_recycles(start, mode, named):
    f = start("faulty", env={"COGVISOR_STOP_GRACE": "1s"})
    recorder = f.record()
    old = f.worker_pid()

    sent = time.monotonic()
    status, body = f.predict(mode=mode, seconds=60)
    elapsed = time.monotonic() - sent

    assert status == 200 and body["status"] == "failed", body
    assert "slot 0 channel error" in body["error"] and named in body["error"], body
    assert elapsed < 10, f"answered after {elapsed:.1f} s"
    h = f.wait_ready_generation(2)
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "all_slots_poisoned" and named in last["reason"], last
    assert h["slots"]["poisoned"] == [], h
    wait_dead(old)
    wait_tree_gone(f.server, old)
    assert f.assert_serves()["generation"] == 2
    assert f.server.proc.poll() is None
    assert_valid_transitions(recorder.stop())
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()


@pytest.mark.parametrize("mode", ["malformed_control_frame", "oversized_control_frame"])
def test_a_bad_frame_on_the_control_pipe_replaces_the_worker(start, mode):
    f = start("faulty")
    f.record()
    old = f.worker_pid()

    sent = time.monotonic()
    status, body = f.predict(mode=mode, seconds=60)
    elapsed = time.monotonic() - sent

    assert status == 200 and body["status"] == "failed", body
    assert "exited unexpectedly" in body["error"], body
    assert elapsed < 10, f"answered after {elapsed:.1f} s"
    dead_at = wait_dead(old)
    h = f.wait_ready_generation(2)
    assert h["worker"]["last_recycle"]["trigger"] == "worker_exit", h
    assert f.server.proc.poll() is None
    f.assert_replaced_cleanly(old, dead_at)
