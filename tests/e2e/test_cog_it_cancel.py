"""Cog's integration tests cancel_*.txtar (replicate/cog integration-tests/tests), black box: an async
`PUT /predictions/{id}` with a webhook filtered to `completed`, cancelled while it runs; the webhook
receives `canceled`. The models are tests/models/cogit_cancel_*."""

from __future__ import annotations

import json

import pytest

from helpers import wait_for
from receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def put_async(server, pid: str, body: dict):
    r = server.request(
        "PUT",
        f"/predictions/{pid}",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    return r.status, r.json()


def cancel(server, pid: str):
    r = server.request("POST", f"/predictions/{pid}/cancel", body=b"{}", headers={"Content-Type": "application/json"})
    return r.status, r.json()


def start_and_wait_running(server, receiver, pid: str, duration: float) -> None:
    status, body = put_async(
        server,
        pid,
        {
            "id": pid,
            "input": {"duration": duration},
            "webhook": receiver.url + "/hook",
            "webhook_events_filter": ["completed"],
        },
    )
    assert status == 202, body
    assert body["id"] == pid and body["status"] == "starting", body

    def running():
        s, b = server.get_json(f"/predictions/{pid}")
        return s == 200 and b.get("status") == "processing" and "started" in (b.get("logs") or "")

    wait_for(running, timeout=30, what=f"{pid} to be running")


def assert_one_canceled_webhook(receiver) -> None:
    hooks = receiver.wait_terminal(timeout=30)
    # The filter is `completed`: the terminal webhook is the only one.
    assert [h["status"] for h in hooks] == ["canceled"], hooks


def test_cancel_sync_prediction(serve, receiver):
    """cancel_sync_prediction.txtar: a sync run() busy-looping for 60 s."""
    server = serve("cogit_cancel_busy")
    start_and_wait_running(server, receiver, "cancel-sync-test", 60)
    status, body = cancel(server, "cancel-sync-test")
    assert status == 200, body
    assert_one_canceled_webhook(receiver)


def test_cancel_async_prediction(serve, receiver):
    """cancel_async_prediction.txtar: an async run() awaiting asyncio.sleep(60)."""
    server = serve("cogit_cancel_async")
    start_and_wait_running(server, receiver, "cancel-async-test", 60)
    status, body = cancel(server, "cancel-async-test")
    assert status == 200, body
    assert_one_canceled_webhook(receiver)


def test_cancel_repeated(serve, receiver):
    """cancel_repeated.txtar: three cancels in a row of a run() blocked in time.sleep(5): none is a
    server error, and the prediction ends `canceled` once."""
    server = serve("cogit_cancel_sleep")
    start_and_wait_running(server, receiver, "cancel-repeat-test", 5)
    answers = [cancel(server, "cancel-repeat-test") for _ in range(3)]
    assert answers[0][0] == 200, answers
    # Later cancels find the prediction still running (200) or already over (404); never a 5xx.
    assert all(status in (200, 404) for status, _ in answers), answers
    assert_one_canceled_webhook(receiver)
    # The server serves again afterwards (the slot is back, or the worker was replaced).
    server.wait_status("READY", timeout=60)
    status, body = server.predict({"duration": 0})
    assert status == 200 and body["status"] == "succeeded" and body["output"] == "completed", body
