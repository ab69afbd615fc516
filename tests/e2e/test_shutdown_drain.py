"""Shutdown drains: running predictions (async too) finish before the worker stops."""

import json
import signal

from helpers import is_alive, live_in_group, wait_for


def test_sigterm_lets_a_running_async_prediction_finish(serve):
    server = serve("slow")
    worker = server.health()["worker"]["pid"]
    r = server.request(
        "POST",
        "/predictions",
        body=json.dumps({"id": "d1", "input": {"seconds": 3.0}}).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202
    server.signal(signal.SIGTERM)
    # Still answering while it drains; new work is refused. The signal is handled asynchronously, so
    # until the server has seen it a request meets the busy slot (409); poll for the refusal.
    def refused():
        status, body = server.predict({"seconds": 0.1})
        assert status in (409, 503), (status, body)
        return status == 503

    wait_for(refused, timeout=10, what="new predictions to be refused with 503 while draining")
    # Readiness says the same, so a load balancer stops sending traffic.
    r = server.request("GET", "/readyz")
    assert r.status == 503 and r.json()["reason"] == "the server is shutting down", r.body
    # The server exits right after the drain, so the outcome is read from its log.
    assert server.wait_exit(timeout=30) == 0
    finished = [
        json.loads(line)
        for line in server.stderr_text().splitlines()
        if '"prediction finished"' in line and '"d1"' in line
    ]
    assert finished and finished[0]["status"] == "succeeded", server.stderr_tail()
    wait_for(lambda: not is_alive(worker) and not live_in_group(worker), timeout=10, what="the worker to be gone")


def test_a_prediction_the_shutdown_cancels_ends_canceled_naming_why(serve):
    # examples/cancel sleeps in short steps, so the cancel lands (a single long time.sleep in C would
    # only end with the worker, and the prediction would fail naming the worker stop instead).
    server = serve("cancel", env={"COGVISOR_SHUTDOWN_DRAIN_TIMEOUT": "500ms"})
    r = server.request(
        "POST",
        "/predictions",
        body=json.dumps({"id": "d2", "input": {"seconds": 60.0}}).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202
    wait_for(lambda: server.get_json("/predictions/d2")[1].get("status") == "processing", timeout=10, what="d2 to run")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=30) == 0
    finished = [
        json.loads(line)
        for line in server.stderr_text().splitlines()
        if '"prediction finished"' in line and '"d2"' in line
    ]
    assert finished, server.stderr_tail()
    assert finished[0]["status"] == "canceled", finished[0]
    assert finished[0]["error"] == (
        "prediction canceled: the server is shutting down (SIGTERM) and the prediction did not finish "
        "within shutdown.drain_timeout (0.5s)"
    ), finished[0]


def test_post_shutdown_stops_the_server(serve):
    server = serve("hello")
    status, body = server.post_json("/shutdown", {})
    assert (status, body) == (200, {})
    assert server.wait_exit(timeout=30) == 0


def test_await_explicit_shutdown_ignores_sigterm(serve):
    server = serve("hello", extra_args=("--await-explicit-shutdown", "true"))
    server.signal(signal.SIGTERM)
    # It keeps serving: a prediction still succeeds after the signal.
    status, body = server.predict({"text": "still here"})
    assert status == 200 and body["status"] == "succeeded", body
    assert server.wait_exit(timeout=0.5) is None
    server.post_json("/shutdown", {})
    assert server.wait_exit(timeout=30) == 0


def test_await_explicit_shutdown_false_is_off(serve):
    server = serve("hello", extra_args=("--await-explicit-shutdown", "false"))
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=30) == 0
