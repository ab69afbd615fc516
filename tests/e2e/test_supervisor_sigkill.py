"""SIGKILL of the supervisor takes the worker down with it (parent-death signal)."""

import signal
import time

from helpers import is_alive, live_in_group, wait_for


def test_worker_dies_with_the_supervisor(serve):
    server = serve("hello")
    worker_pid = server.health()["worker"]["pid"]
    assert is_alive(worker_pid)

    server.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    server.wait_exit(timeout=10)

    wait_for(
        lambda: not is_alive(worker_pid) and not live_in_group(worker_pid),
        timeout=5,
        what=f"worker {worker_pid} and its group to die",
    )
    elapsed = time.monotonic() - killed_at
    assert elapsed < 2, f"worker outlived the supervisor by {elapsed:.2f} s"
