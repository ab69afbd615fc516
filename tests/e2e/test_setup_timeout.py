"""COG_SETUP_TIMEOUT bounds start-up: a setup that sleeps 30 s fails after 1 s and its worker is stopped."""

import time

from helpers import is_alive, live_descendants, wait_for


def test_setup_timeout(serve):
    started = time.monotonic()
    server = serve("setup_sleep", env={"COG_SETUP_TIMEOUT": "1"}, wait=None)
    h = server.wait_status("SETUP_FAILED", timeout=20)
    elapsed = time.monotonic() - started
    assert h["setup"]["status"] == "failed", h
    assert "timed out" in h["setup"].get("logs", "").lower(), h

    wait_for(lambda: not live_descendants(server.pid), timeout=15, what="the timed-out worker to be stopped")
    for pid in server.worker_pids:
        assert not is_alive(pid), f"worker {pid} still alive"
    h = server.health()
    assert h["worker"]["pid"] is None or not is_alive(h["worker"]["pid"]), h

    # Checked last so the checks above still report on a slow run.
    assert elapsed < 5, f"SETUP_FAILED after {elapsed:.2f} s with a 1 s setup timeout"


def test_predictions_before_ready_get_503(serve):
    server = serve("setup_sleep", wait="STARTING")
    status, body = server.predict({})
    assert status == 503, body
    assert body["status"] == "failed", body
    assert isinstance(body["error"], str) and body["error"], body
