"""SIGKILL of the supervisor: the worker dies with it (parent-death signal), idle or in the middle of
a prediction, and so does everything in the worker's process group (the worker's group guard kills it
when the control pipe hangs up), and a setsid daemon that left the group (the guard finds it by the
worker tree's COGVISOR_TREE_ID); then the guard removes the dead supervisor's runtime directory."""

from __future__ import annotations

import signal
import time

import pytest

from faultlib import in_background, read_pids, wait_busy, wait_tree_gone
from helpers import is_alive, live_in_group, wait_for


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "predicting"])
def test_the_worker_dies_with_the_supervisor(start, busy):
    f = start("faulty")
    worker = f.worker_pid()
    pending = None
    if busy:
        pending = in_background(f.predict, mode="sleep", seconds=600)
        wait_busy(f.server)

    f.server.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert f.server.wait_exit(timeout=10) == -signal.SIGKILL

    wait_tree_gone(f.server, worker, timeout=10)
    elapsed = time.monotonic() - killed_at
    assert elapsed < 3, f"the worker outlived the supervisor by {elapsed:.2f} s"
    if pending is not None:
        # The client sees the connection drop: no answer, and no hang.
        with pytest.raises(OSError):
            pending.result(timeout=30)
    # The guard removes the killed supervisor's runtime directory too: nothing is left in its TMPDIR.
    wait_for(lambda: not any(f.tmpdir.iterdir()), timeout=10,
             what=f"the runtime directory in {f.tmpdir} to be removed")


def test_the_models_children_in_the_workers_group_die_with_it(start):
    f = start("faulty")
    worker = f.worker_pid()
    status, body = f.predict(mode="children", pid_dir=str(f.pid_dir))
    assert status == 200 and body["status"] == "succeeded", body
    pids = read_pids(f.pid_dir, "plain", "inheriting", "daemon")
    for pid in pids.values():
        f.server.track(pid)
    in_group = {name: pid for name, pid in pids.items() if name != "daemon"}

    f.server.signal(signal.SIGKILL)
    f.server.wait_exit(timeout=10)

    # The worker's group guard sees the control pipe hang up and kills the whole group.
    wait_for(
        lambda: not is_alive(worker) and not live_in_group(worker) and not any(is_alive(p) for p in in_group.values()),
        timeout=10,
        what=f"worker {worker}, its process group and the model's children {in_group} to die",
    )


def test_a_setsid_daemon_dies_with_the_supervisor(start):
    f = start("faulty")
    status, body = f.predict(mode="children", pid_dir=str(f.pid_dir))
    assert status == 200 and body["status"] == "succeeded", body
    daemon = read_pids(f.pid_dir, "daemon")["daemon"]
    f.server.track(daemon)

    f.server.signal(signal.SIGKILL)
    f.server.wait_exit(timeout=10)

    wait_for(lambda: not is_alive(daemon), timeout=10, what=f"the setsid daemon {daemon} to die")
