"""Cog's integration tests of failures and their reports (replicate/cog integration-tests/tests), found
after the first two sweeps: prediction_error_response, sequential_state_leak, webhook_delivery_failure
and webhook_prediction_error, against our own models in tests/models/cogit_*."""

from __future__ import annotations

import json
import socket

import pytest

from helpers import assert_succeeded, wait_for
from receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def _async_create(server, body: dict):
    return server.request(
        "POST",
        "/predictions",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )


# prediction_error_response: an exception in predict() is HTTP 200 with status "failed", the
# exception's message as the error and predict_time in the metrics, whatever the exception class.
@pytest.mark.parametrize(
    "mode, message",
    [
        ("value_error", "this is a value error"),
        ("runtime_error", "runtime problem"),
        ("generic", "something went wrong"),
    ],
)
def test_an_exception_is_a_well_formed_failed_response(serve, mode, message):
    server = serve("cogit_error_modes")
    status, body = server.predict({"mode": mode})
    assert status == 200, body
    assert body["status"] == "failed", body
    assert body["error"].endswith(message), body
    assert isinstance(body["metrics"]["predict_time"], (int, float)), body
    # The worker survives: the next prediction succeeds.
    status, body = server.predict({"mode": "none"})
    assert_succeeded(status, body)
    assert body["output"] == "ok"


# sequential_state_leak: module-level state persists across sequential predictions, since the worker
# process is long-lived (intended, documented behaviour).
def test_module_level_state_persists_across_predictions(serve):
    server = serve("cogit_state_leak")
    for item, expected in (("a", "['a']"), ("b", "['a', 'b']"), ("c", "['a', 'b', 'c']")):
        status, body = server.predict({"item": item})
        assert_succeeded(status, body)
        assert body["output"] == expected, body


def _refused_port() -> int:
    """A port on which nothing listens (bound, never listening, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# webhook_delivery_failure: an async prediction whose webhook URL refuses connections leaves the server
# healthy: READY again within the txtar's five seconds, and the next sync prediction succeeds.
def test_an_unreachable_webhook_leaves_the_server_healthy(serve):
    server = serve("cogit_ok")
    url = f"http://127.0.0.1:{_refused_port()}/nonexistent"
    r = _async_create(
        server,
        {"id": "webhook-fail-test", "input": {}, "webhook": url, "webhook_events_filter": ["completed"]},
    )
    assert r.status == 202, r.body
    wait_for(lambda: server.health()["status"] == "READY", timeout=5, what="READY after a failed webhook")
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert body["output"] == "ok"
    # The prediction itself succeeded: delivering its result is what failed.
    status, body = server.get_json("/predictions/webhook-fail-test")
    assert status == 200 and body["status"] == "succeeded", (status, body)
    assert body["output"] == "ok", body


# webhook_prediction_error: run() raising during an async prediction delivers a `completed` webhook
# with status "failed" and the exception's message as the error.
def test_a_failed_async_prediction_reports_its_error_to_the_webhook(serve, receiver):
    server = serve("cogit_run_raises")
    r = _async_create(
        server,
        {"id": "webhook-error-test", "webhook": f"{receiver.url}/webhook", "webhook_events_filter": ["completed"]},
    )
    assert r.status == 202, r.body
    hooks = receiver.wait_terminal(timeout=30)
    assert len(hooks) == 1, hooks
    final = hooks[0]
    assert final["id"] == "webhook-error-test", final
    assert final["status"] == "failed", final
    assert final["error"].endswith("prediction went wrong"), final
