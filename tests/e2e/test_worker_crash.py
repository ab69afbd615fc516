"""The worker dies in the middle of a prediction: that request fails naming the exit, health never
shows READY with a dead worker, and the worker is restarted without outside help."""

import pytest

from helpers import assert_health_shape, is_alive, wait_for


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("exit", "exit code 3"), ("kill", "SIGKILL")],
)
def test_worker_death_fails_the_prediction(serve, mode, expected):
    server = serve("crash")
    status, body = server.predict({"mode": "ok"})
    assert status == 200 and body["status"] == "succeeded", body
    old_pid = server.health()["worker"]["pid"]

    status, body = server.predict({"mode": mode})
    assert status == 200, body
    assert body["status"] == "failed", body
    assert expected in body["error"], body

    wait_for(lambda: not is_alive(old_pid), timeout=10, what=f"old worker {old_pid} to be gone")

    def settled():
        h = server.health()
        pid = h["worker"]["pid"]
        # At no point may READY be shown with a worker that is not running.
        if h["status"] in ("READY", "BUSY"):
            assert pid is not None and pid != old_pid and is_alive(pid), f"READY with a dead worker: {h}"
        return h if h["status"] == "READY" and pid != old_pid else None

    h = wait_for(settled, timeout=30, what="READY with a new worker")
    assert_health_shape(h)
    pid = h["worker"]["pid"]
    assert is_alive(pid), h
    assert h["worker"]["restarts"] == 1, h
    assert h["worker"]["last_recycle"]["trigger"] == "worker_exit", h
    assert expected in h["worker"]["last_recycle"]["reason"], h
    status, body = server.predict({"mode": "ok"})
    assert status == 200 and body["status"] == "succeeded", body
