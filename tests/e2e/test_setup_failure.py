"""A model that fails to import or to set up: SETUP_FAILED quickly, the error visible, predictions 503."""

import time

from helpers import assert_health_shape, is_alive, live_descendants, wait_for


def _wait_setup_failed(server, started):
    h = server.wait_status("SETUP_FAILED", timeout=10)
    elapsed = time.monotonic() - started
    assert_health_shape(h)
    assert h["setup"]["status"] == "failed", h
    assert elapsed < 5, f"SETUP_FAILED took {elapsed:.2f} s"
    return h


def test_import_error_is_setup_failed_with_the_error(serve):
    started = time.monotonic()
    server = serve("import_error", wait=None)
    h = _wait_setup_failed(server, started)
    assert "import_error model: this module refuses to load" in h["setup"].get("logs", ""), h


def test_setup_exception_is_setup_failed_with_the_error(serve):
    started = time.monotonic()
    server = serve("setup_error", wait=None)
    h = _wait_setup_failed(server, started)
    assert "boom in setup" in h["setup"].get("logs", ""), h


def test_predictions_after_setup_failure_get_503(serve):
    server = serve("setup_error", wait="SETUP_FAILED")
    status, body = server.predict({})
    assert status == 503, body
    assert body["status"] == "failed", body
    assert isinstance(body["error"], str) and body["error"], body


def test_no_worker_left_after_setup_failure(serve):
    server = serve("setup_error", wait="SETUP_FAILED")
    wait_for(lambda: not live_descendants(server.pid), timeout=15, what="no process below the supervisor")
    pid = server.health()["worker"]["pid"]
    assert pid is None or not is_alive(pid), server.health()
