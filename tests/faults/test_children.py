"""A predictor that leaves processes behind: a plain `Popen` child, one that inherits every fd
(`close_fds=False`), and a double-forked `setsid` daemon that is a copy of the worker holding its
control pipe and slot socket. When the worker dies, the death is still noticed at once (from the
exit, not from the pipe closing: coglet hangs here), and every one of those processes is killed and
reaped, whichever way the worker went."""

from __future__ import annotations

import os
import signal
import time

from faultlib import assert_valid_transitions, read_pids, wait_dead, wait_no_temp_leftovers, wait_tree_gone
from helpers import is_alive, read_proc

CHILDREN = ("plain", "inheriting", "daemon")


def spawn_children(f) -> dict[str, int]:
    worker = f.worker_pid()
    status, body = f.predict(mode="children", pid_dir=str(f.pid_dir))
    assert status == 200 and body["status"] == "succeeded", body
    pids = read_pids(f.pid_dir, *CHILDREN)
    for name, pid in pids.items():
        f.server.track(pid)
        assert is_alive(pid), (name, read_proc(pid))
    daemon = read_proc(pids["daemon"])
    assert daemon is not None and daemon.pgid != worker, f"the daemon is still in the worker's group: {daemon}"
    return pids


def test_children_and_a_setsid_daemon_die_with_a_killed_worker(start):
    f = start("faulty")
    recorder = f.record()
    old = f.worker_pid()
    pids = spawn_children(f)

    os.kill(old, signal.SIGKILL)
    wait_dead(old)
    h = f.wait_ready_generation(2)
    assert "SIGKILL" in h["worker"]["last_recycle"]["reason"], h
    wait_tree_gone(f.server, old, pids)
    assert f.assert_serves()["generation"] == 2
    assert_valid_transitions(recorder.stop())
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()


def test_a_worker_that_exits_while_its_children_hold_its_fds_is_noticed_at_once(start):
    f = start("faulty")
    old = f.worker_pid()
    sent = time.monotonic()
    status, body = f.predict(mode="children_then_exit", pid_dir=str(f.pid_dir))
    elapsed = time.monotonic() - sent
    assert status == 200 and body["status"] == "failed", body
    assert "exit code 5" in body["error"], body
    assert elapsed < 10, f"the crash took {elapsed:.1f} s to be noticed"
    pids = read_pids(f.pid_dir, *CHILDREN)
    f.wait_ready_generation(2)
    wait_tree_gone(f.server, old, pids)
    f.assert_serves()
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()


def test_children_and_a_setsid_daemon_do_not_outlive_a_sigterm(start):
    f = start("faulty")
    old = f.worker_pid()
    pids = spawn_children(f)
    f.stop_cleanly()
    wait_tree_gone(f.server, old, pids, timeout=10)
