"""SIGTERM on an idle server: a clean exit 0, and nothing of the worker's process group is left."""

import signal
import time

from helpers import is_alive, live_in_group


def test_sigterm_idle_exits_zero_and_leaves_nothing(serve):
    server = serve("hello")
    worker_pid = server.health()["worker"]["pid"]
    assert live_in_group(worker_pid), "the worker's group should exist while it runs"

    server.signal(signal.SIGTERM)
    started = time.monotonic()
    rc = server.wait_exit(timeout=10)
    elapsed = time.monotonic() - started
    assert rc is not None, f"server still running 10 s after SIGTERM\n{server.stderr_tail()}"
    assert rc == 0, f"exit code {rc}\n{server.stderr_tail()}"
    assert elapsed < 5, f"shutdown took {elapsed:.2f} s"
    assert not is_alive(worker_pid), f"worker {worker_pid} survived the supervisor"
    assert live_in_group(worker_pid) == [], live_in_group(worker_pid)
